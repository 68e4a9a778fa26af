-- Self-refine set (L_REF): each question with both a positive that is a rationale and a negative
-- -> (latest negative y-  ->  latest such positive y+). A bare right answer is never y+.
CREATE OR REPLACE VIEW refine_pairs AS
WITH latest AS (
    SELECT *, row_number() OVER (PARTITION BY question_id, correct
                                 ORDER BY iteration DESC, sample_index ASC) AS rk
    FROM samples
    WHERE NOT correct OR coalesce(has_rationale, true)
)
SELECT n.question_id,
       n.rationale                 AS negative,
       p.rationale                 AS target,
       [n.sample_id, p.sample_id]  AS source_ids
FROM latest n
JOIN latest p ON p.question_id = n.question_id AND p.correct AND p.rk = 1
WHERE NOT n.correct AND n.rk = 1;
