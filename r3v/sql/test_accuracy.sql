-- Test accuracy per iteration and strategy, grouped once by task family and once by difficulty level
-- (a grouping set each; `grouped_by` says which): greedy (pass@1), sample (mean over the N samples)
-- and select@N. family_accuracy and level_accuracy are its two halves.
CREATE OR REPLACE VIEW test_accuracy AS
SELECT iteration,
       strategy,
       family,
       level,
       CASE WHEN grouping(family) = 0 THEN 'family' ELSE 'level' END AS grouped_by,
       count(DISTINCT question_id)              AS questions,
       avg(correct::INT)                        AS accuracy,
       avg((judge_reason = 'unparsed')::INT)    AS unparsed_rate
FROM test_predictions
GROUP BY GROUPING SETS ((iteration, strategy, family), (iteration, strategy, level));
