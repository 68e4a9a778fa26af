-- SFT set (L_SFT): each question with >= 1 positive -> its latest positive
-- (latest = highest iteration; ties broken by the lowest sample index).
CREATE OR REPLACE VIEW sft_examples AS
SELECT question_id,
       rationale      AS target,
       [sample_id]    AS source_ids,
       iteration      AS source_iteration
FROM positives
QUALIFY row_number() OVER (PARTITION BY question_id ORDER BY iteration DESC, sample_index ASC) = 1;
