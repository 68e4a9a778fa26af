-- Test accuracy per task family (metadata.family of the embedded benchmark; 'unknown' for user
-- data without one), per iteration and strategy: greedy (pass@1), sample (mean over the N
-- samples) and select@N. Reads the evaluation predictions (eval/), so it needs no rerun.
CREATE OR REPLACE VIEW family_accuracy AS
SELECT e.iteration,
       coalesce(json_extract_string(q.metadata, '$.family'), 'unknown') AS family,
       e.strategy,
       count(DISTINCT e.question_id)                                      AS questions,
       avg(e.correct::INT)                                                AS accuracy,
       avg((e.judge_reason = 'unparsed')::INT)                            AS unparsed_rate
FROM src_eval e
JOIN src_questions q ON q.id = e.question_id AND q.split = 'test'
WHERE e.iteration <= coalesce(getvariable('r3v_upto'), 2147483647)
GROUP BY ALL
ORDER BY e.iteration, family, e.strategy;
