-- Test accuracy per difficulty level (metadata.level: reasoning steps per question in the embedded
-- benchmark; NULL for data without one), per iteration and strategy: greedy (pass@1), sample (mean
-- over the N samples) and select@N. Reads the evaluation predictions (test_accuracy), so it needs no rerun.
CREATE OR REPLACE VIEW level_accuracy AS
SELECT iteration, level, strategy, questions, accuracy, unparsed_rate
FROM test_accuracy WHERE grouped_by = 'level'
ORDER BY iteration, level, strategy;
