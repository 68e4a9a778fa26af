-- Questioner -> Answerer -> Reasoner role examples (SQ-InstructBLIP): each question's latest
-- positive chain (a `qar` sample whose Reasoner answered right), with its sub-questions and answers.
CREATE OR REPLACE VIEW qar_chains AS
SELECT question_id,
       chain,
       rationale   AS target,
       [sample_id] AS source_ids
FROM positives
WHERE prompt_kind = 'qar' AND len(chain) > 0
QUALIFY row_number() OVER (PARTITION BY question_id ORDER BY iteration DESC, sample_index ASC) = 1;
