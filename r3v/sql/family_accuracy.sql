-- Test accuracy per task family (metadata.family of the embedded benchmark; 'unknown' for user
-- data without one), per iteration and strategy: greedy (pass@1), sample (mean over the N
-- samples) and select@N. Reads the evaluation predictions (test_predictions), so it needs no rerun.
CREATE OR REPLACE VIEW family_accuracy AS
SELECT iteration,
       family,
       strategy,
       count(DISTINCT question_id)              AS questions,
       avg(correct::INT)                        AS accuracy,
       avg((judge_reason = 'unparsed')::INT)    AS unparsed_rate
FROM test_predictions
GROUP BY ALL
ORDER BY iteration, family, strategy;
