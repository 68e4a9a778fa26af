-- Per question: positives and negatives in the accumulated pool.
CREATE OR REPLACE VIEW pool_stats AS
SELECT question_id,
       count(*) FILTER (WHERE correct)     AS n_pos,
       count(*) FILTER (WHERE NOT correct) AS n_neg,
       any_value(gold)                     AS gold
FROM samples
GROUP BY question_id;
