-- Every judged rationale in the pool, up to iteration getvariable('r3v_upto') when set.
CREATE OR REPLACE VIEW samples AS
SELECT * FROM src_samples
WHERE iteration <= coalesce(getvariable('r3v_upto'), 2147483647);
