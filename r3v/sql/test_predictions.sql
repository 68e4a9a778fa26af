-- Each test prediction of the evaluation (eval/) with its question's family and level (from the
-- question's metadata: 'unknown' / NULL for user data without them), per iteration and strategy:
-- greedy (pass@1), sample (each of the N samples) and select@N. test_accuracy groups
-- it (family_accuracy, level_accuracy).
CREATE OR REPLACE VIEW test_predictions AS
SELECT e.iteration,
       e.strategy,
       e.question_id,
       e.correct,
       e.judge_reason,
       coalesce(json_extract_string(q.metadata, '$.family'), 'unknown') AS family,
       try_cast(json_extract_string(q.metadata, '$.level') AS INTEGER)   AS level
FROM src_eval e
JOIN src_questions q ON q.id = e.question_id AND q.split = 'test'
WHERE e.iteration <= coalesce(getvariable('r3v_upto'), 2147483647);
