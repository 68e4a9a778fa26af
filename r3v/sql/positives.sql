-- Rationales whose final answer matched the gold answer.
CREATE OR REPLACE VIEW positives AS
SELECT * FROM samples WHERE correct;
