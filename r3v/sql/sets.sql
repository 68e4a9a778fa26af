-- The training sets as built and stored for each iteration (sets/iteration=<k>/kind=<kind>/).
CREATE OR REPLACE VIEW sets AS
SELECT * FROM src_sets
WHERE iteration <= coalesce(getvariable('r3v_upto'), 2147483647);
