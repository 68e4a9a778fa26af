-- One row per iteration: pool facts, set sizes, evaluation metrics, end-of-training losses and
-- step wall times.
-- Iteration 0 is the seed model (evaluated before any self-training).
CREATE OR REPLACE VIEW metrics AS
WITH its AS (
    SELECT iteration FROM src_eval_metrics UNION SELECT iteration FROM samples
    UNION SELECT iteration FROM src_steps
),
per_q AS (
    SELECT iteration, question_id,
           count(*) FILTER (WHERE correct) AS np, count(*) FILTER (WHERE NOT correct) AS nn
    FROM samples GROUP BY iteration, question_id
),
s AS (
    SELECT iteration,
           count(*)                                            AS samples,
           count(*) FILTER (WHERE correct)                     AS positives,
           count(*) FILTER (WHERE NOT correct)                 AS negatives,
           avg((judge_reason = 'unparsed')::INT)               AS unparsed_rate,
           avg((NOT coalesce(has_rationale, true))::INT)       AS rationale_free_rate,
           avg(completion_tokens)                              AS mean_rationale_tokens
    FROM samples GROUP BY iteration
),
q AS (
    SELECT iteration, avg((np > 0)::INT) AS share_with_positive, avg((np > 0 AND nn > 0)::INT) AS share_mixed
    FROM per_q GROUP BY iteration
),
t AS (
    SELECT iteration,
           count(*) FILTER (WHERE kind = 'sft')    AS sft_examples,
           count(*) FILTER (WHERE kind = 'refine') AS refine_pairs,
           count(*) FILTER (WHERE kind = 'select') AS select_sets,
           count(*) FILTER (WHERE kind = 'sq')     AS sq_samples,
           count(*) FILTER (WHERE kind = 'qar')    AS qar_chains
    FROM sets GROUP BY iteration
),
e AS (
    SELECT iteration,
           max(value) FILTER (WHERE metric = 'pass@1')         AS pass_at_1,
           max(value) FILTER (WHERE metric = 'qar_pass@1')     AS qar_pass_at_1,
           max(value) FILTER (WHERE metric LIKE 'maj@%')       AS maj_at_n,
           max(value) FILTER (WHERE metric LIKE 'oracle@%')    AS oracle_at_n,
           max(value) FILTER (WHERE metric LIKE 'select@%')    AS select_at_n,
           max(value) FILTER (WHERE metric = 'rationale_free') AS eval_rationale_free,
           max(n_questions)                                    AS eval_questions
    FROM src_eval_metrics GROUP BY iteration
),
l AS (  -- each loss at the end of the iteration's training: mean over its last tenth of steps
    SELECT iteration, avg(loss_sft) FILTER (WHERE tail) AS loss_sft_end,
           avg(loss_refine) FILTER (WHERE tail) AS loss_refine_end,
           avg(loss_select) FILTER (WHERE tail) AS loss_select_end,
           avg(loss_sq) FILTER (WHERE tail) AS loss_sq_end
    FROM (SELECT *, row_number() OVER (PARTITION BY iteration ORDER BY step DESC)
                    <= greatest(1, count(*) OVER (PARTITION BY iteration) // 10) AS tail
          FROM src_train_log)
    GROUP BY iteration
),
w AS (
    SELECT iteration, map_from_entries(list(struct_pack(k := step, v := round(seconds, 1)) ORDER BY finished_at)) AS seconds_by_step,
           sum(seconds) AS seconds_total
    FROM src_steps GROUP BY iteration
)
SELECT its.iteration, e.pass_at_1, e.maj_at_n, e.oracle_at_n, e.select_at_n, e.eval_questions, e.eval_rationale_free,
       s.samples, s.positives, s.negatives, q.share_with_positive, q.share_mixed, s.unparsed_rate, s.rationale_free_rate,
       s.mean_rationale_tokens, t.sft_examples, t.refine_pairs, t.select_sets,
       l.loss_sft_end, l.loss_refine_end, l.loss_select_end,
       e.qar_pass_at_1, t.sq_samples, t.qar_chains, l.loss_sq_end,
       w.seconds_total, w.seconds_by_step
FROM its
LEFT JOIN e USING (iteration) LEFT JOIN s USING (iteration) LEFT JOIN q USING (iteration)
LEFT JOIN t USING (iteration) LEFT JOIN l USING (iteration) LEFT JOIN w USING (iteration)
WHERE its.iteration <= coalesce(getvariable('r3v_upto'), 2147483647)
ORDER BY its.iteration;
