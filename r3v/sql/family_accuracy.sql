-- Test accuracy per task family (metadata.family of the embedded benchmark; 'unknown' for user
-- data without one), per iteration and strategy: greedy (pass@1), sample (mean over the N
-- samples) and select@N. Reads the evaluation predictions (test_accuracy), so it needs no rerun.
CREATE OR REPLACE VIEW family_accuracy AS
SELECT iteration, family, strategy, questions, accuracy, unparsed_rate
FROM test_accuracy WHERE grouped_by = 'family'
ORDER BY iteration, family, strategy;
