-- Rationales whose final answer was wrong or could not be parsed (judge_reason says which).
CREATE OR REPLACE VIEW negatives AS
SELECT * FROM samples WHERE NOT correct;
