-- Canonical questions of the run (seed, train, test splits). Image bytes are in `image.bytes`.
CREATE OR REPLACE VIEW questions AS
SELECT * FROM src_questions;
