-- Self-questioning (SQ-LLaVA's L_SQ): every train question, the image it is about, and its latest
-- positive rationale when the pool has one (the SFT set's pick). Questions about the same image
-- (same bytes, or the same path) are packed into multi-turn samples (r3v/sq/selfq.py).
CREATE OR REPLACE VIEW sq_questions AS
SELECT q.id                                          AS question_id,
       coalesce(md5(q.image.bytes), q.image.path)    AS image_key,
       s.target                                      AS rationale,
       coalesce(s.source_ids, [])                    AS source_ids
FROM questions q LEFT JOIN sft_examples s ON s.question_id = q.id
WHERE q.split = 'train';
