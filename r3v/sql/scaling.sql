-- Test-time compute scaling (r3v scale / the experiment runner): one row per iteration and N.
-- pass@1 is greedy and the same for every N; maj@N and oracle@N use the first N samples of one
-- shared set; select@N is the model answering the select prompt over those N rationales.
-- (eval.strategy=both: N counts rationales and chains together; qar_pass@1 is in src_scaling.)
CREATE OR REPLACE VIEW scaling AS
WITH m AS (
    SELECT iteration, metric, value, n_questions,
           CASE WHEN metric LIKE '%pass@1' OR metric NOT LIKE '%@%' THEN NULL  -- rationale_free has no N
                ELSE split_part(metric, '@', 2)::INT END AS n,
           split_part(metric, '@', 1) AS kind
    FROM src_scaling
),
p AS (SELECT iteration, value AS pass_at_1 FROM m WHERE metric = 'pass@1')
SELECT m.iteration, m.n, p.pass_at_1,
       max(value) FILTER (WHERE kind = 'maj')    AS maj_at_n,
       max(value) FILTER (WHERE kind = 'oracle') AS oracle_at_n,
       max(value) FILTER (WHERE kind = 'select') AS select_at_n,
       max(n_questions)                          AS eval_questions
FROM m JOIN p USING (iteration)
WHERE m.n IS NOT NULL
GROUP BY m.iteration, m.n, p.pass_at_1
ORDER BY m.iteration, m.n;
