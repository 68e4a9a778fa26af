-- Self-select set (L_SEL): each mixed question -> 3 candidates with >= 1 positive, target = gold.
--   rule p2n1: 2 latest positives + the latest negative, when the question has >= 2 positives;
--   rule p1n2: the latest positive + 2 latest negatives, when it has >= 2 negatives.
-- A question that satisfies both rules yields both sets. Candidates are shuffled by a seed
-- derived from (run seed, question id, rule, sample id), so the correct one has no fixed slot.
CREATE OR REPLACE VIEW select_sets AS
WITH ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY question_id, correct
                                   ORDER BY iteration DESC, sample_index ASC) AS rk
    FROM samples s
),
picks AS (
    SELECT 'p2n1' AS rule, r.* FROM ranked r JOIN pool_stats USING (question_id)
    WHERE n_pos >= 2 AND n_neg >= 1 AND ((correct AND rk <= 2) OR (NOT correct AND rk = 1))
    UNION ALL
    SELECT 'p1n2' AS rule, r.* FROM ranked r JOIN pool_stats USING (question_id)
    WHERE n_pos >= 1 AND n_neg >= 2 AND ((correct AND rk = 1) OR (NOT correct AND rk <= 2))
),
shuffled AS (
    SELECT *, md5(concat(coalesce(getvariable('r3v_seed'), 0), '#', question_id, '#', rule, '#', sample_id)) AS shuffle_key
    FROM picks
)
SELECT question_id,
       rule,
       list(rationale ORDER BY shuffle_key) AS candidates,
       list(correct   ORDER BY shuffle_key) AS candidate_correct,
       list(sample_id ORDER BY shuffle_key) AS source_ids,
       any_value(gold)                      AS gold
FROM shuffled
GROUP BY question_id, rule;
