-- SFT set (L_SFT): each question with >= 1 positive that is a rationale (reasoning before the
-- answer: a bare `Answer: 12` is not one) -> its latest such positive
-- (latest = highest iteration; ties broken by the lowest sample index).
CREATE OR REPLACE VIEW sft_examples AS
SELECT question_id,
       rationale      AS target,
       [sample_id]    AS source_ids,
       iteration      AS source_iteration
FROM positives
WHERE coalesce(has_rationale, true)
QUALIFY row_number() OVER (PARTITION BY question_id ORDER BY iteration DESC, sample_index ASC) = 1;
