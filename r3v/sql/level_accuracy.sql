-- Test accuracy per difficulty level (metadata.level: reasoning steps per question in the embedded
-- benchmark; NULL for data without one), per iteration and strategy: greedy (pass@1), sample (mean
-- over the N samples) and select@N. Reads the evaluation predictions (test_predictions), so it needs no rerun.
CREATE OR REPLACE VIEW level_accuracy AS
SELECT iteration,
       level,
       strategy,
       count(DISTINCT question_id)              AS questions,
       avg(correct::INT)                        AS accuracy,
       avg((judge_reason = 'unparsed')::INT)    AS unparsed_rate
FROM test_predictions
GROUP BY ALL
ORDER BY iteration, level, strategy;
