"""Arrow schemas of every table in a run folder (what `r3v sql` shows).

Partition keys (`iteration`, `kind`, `split`, `step`) are real columns too, so a file read on its
own still says where it belongs.
"""

from __future__ import annotations

import pyarrow as pa

from r3v.objective import TERMS

# The canonical question table every source is read into (r3v/datasets.py): questions/split=<s>/
QUESTION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("rationale", pa.string()),
    ("metadata", pa.string()),
    ("split", pa.string()),
])

# One sub-question of a Questioner -> Answerer -> Reasoner chain and its answer.
QA_PAIR = pa.struct([("question", pa.string()), ("answer", pa.string())])

# Raw generations of the rollout step, before judging: rollouts/iteration=<k>/shard=<j>/
ROLLOUT_SCHEMA = pa.schema([
    ("shard", pa.int32()),  # the rollout shard (a contiguous block of train questions) it came from
    ("sample_id", pa.string()),  # "<question_id>#<iteration>#<sample_index>"
    ("question_id", pa.string()),
    ("iteration", pa.int32()),
    ("sample_index", pa.int32()),
    ("seed", pa.int64()),
    ("prompt_kind", pa.string()),  # cot | qar (a chain; `rationale` is its Reasoner's)
    ("rationale", pa.string()),
    ("finished", pa.bool_()),  # ended with the end-of-turn token (not cut at max_new_tokens)
    ("model_ref", pa.string()),  # "<base path>@<adapter hash or 'none'>"
    ("prompt_tokens", pa.int32()),
    ("completion_tokens", pa.int32()),
    ("seconds", pa.float64()),  # this row's share of its batch's wall time
    ("chain", pa.list_(QA_PAIR)),  # qar: the Questioner's sub-questions and the Answerer's answers (null for cot)
])

# Judged samples, the pool: samples/iteration=<k>/
SAMPLE_SCHEMA = pa.schema(list(ROLLOUT_SCHEMA) + [
    ("answer", pa.string()),  # extracted final answer, null when unparsed
    ("gold", pa.string()),
    ("correct", pa.bool_()),
    ("judge_reason", pa.string()),  # exact | numeric | choice | mismatch | unparsed | ambiguous | bad_choice | wrong_reading
    # holds its reasoning before the answer (r3v.analysis.error_kinds.is_rationale): only such a
    # positive enters L_SFT or becomes y+ (a bare `Answer: 12` is not a rationale)
    ("has_rationale", pa.bool_()),
])

# One turn of a self-questioning sample (kind=sq), in conversation order.
SQ_TURN = pa.struct([
    ("question_id", pa.string()),
    ("asked_by", pa.string()),  # user | vusr (the virtual user: its question tokens are L_SQ targets)
    ("answer", pa.string()),
    ("answer_kind", pa.string()),  # rationale (a positive, learnt) | gold (`Answer: X`, learnt) | context (not learnt)
])

# Training sets: sets/iteration=<k>/kind=<sft|refine|select|sq|qar>/
SET_SCHEMA = pa.schema([
    ("example_id", pa.string()),
    ("iteration", pa.int32()),
    ("kind", pa.string()),
    ("question_id", pa.string()),
    ("negative", pa.string()),  # refine: the wrong rationale y-
    ("candidates", pa.list_(pa.string())),  # select: shuffled candidate rationales
    ("candidate_correct", pa.list_(pa.bool_())),
    ("target", pa.string()),  # the labelled span: rationale (sft), y+ (refine), answer (select)
    ("source_ids", pa.list_(pa.string())),  # sample_ids the example was built from
    ("turns", pa.list_(SQ_TURN)),  # sq: the packed questions about one image (question_id = the first)
    ("chain", pa.list_(QA_PAIR)),  # qar: a positive chain's sub-questions and answers (target: its rationale)
])

# Per-step training log: train_log/iteration=<k>/   (iteration 0 = the warm-up)
TRAIN_LOG_SCHEMA = pa.schema([
    ("iteration", pa.int32()),
    ("step", pa.int32()),
    ("epoch", pa.float64()),
    ("lr", pa.float64()),
    ("grad_norm", pa.float64()),
    ("loss_total", pa.float64()),
    ("seconds", pa.float64()),
    ("attempt", pa.int32()),  # 0: the first attempt; n: the n-th resume from a mid-training checkpoint
    # per term of r3v.objective.TERMS: its token-mean loss over the step (null when it had no tokens)
    # and its target tokens
    *[(c, kind) for t in TERMS for c, kind in ((t.loss_column, pa.float64()), (t.tokens_column, pa.int64()))],
])

# Evaluation predictions: eval/iteration=<k>/   (iteration 0 = seed model)
EVAL_SCHEMA = pa.schema([
    ("iteration", pa.int32()),
    ("question_id", pa.string()),
    ("strategy", pa.string()),  # greedy | sample | select@N
    ("sample_index", pa.int32()),
    ("text", pa.string()),
    ("answer", pa.string()),
    ("gold", pa.string()),
    ("correct", pa.bool_()),
    ("judge_reason", pa.string()),
])

# Eval metrics: eval_metrics/iteration=<k>/
EVAL_METRIC_SCHEMA = pa.schema([
    ("iteration", pa.int32()),
    ("metric", pa.string()),  # pass@1 | maj@N | oracle@N | select@N
    ("value", pa.float64()),
    ("n_questions", pa.int32()),
])

# Step timings and facts: steps/iteration=<k>/step=<name>/
STEP_SCHEMA = pa.schema([
    ("iteration", pa.int32()),
    ("step", pa.string()),
    ("seconds", pa.float64()),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("info", pa.string()),  # JSON
])

# One row per finished rollout shard, written after its rollouts: shards/iteration=<k>/shard=<j>/
# (a retried run skips the shards listed here; `worker` and the times show who did which, when)
SHARD_SCHEMA = pa.schema([
    ("iteration", pa.int32()),
    ("shard", pa.int32()),
    ("questions", pa.int32()),
    ("samples", pa.int32()),
    ("first_question", pa.string()),
    ("last_question", pa.string()),
    ("seconds", pa.float64()),  # wall time of the shard, model load included
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("worker", pa.string()),  # host:pid of the process that sampled it
])

# Self-generated questions (`r3v ask`): asked/iteration=<k>/split=<split>/ — per image, the model
# answers one of its questions, then the virtual user asks; `novel`: not a question of the data.
ASK_SCHEMA = pa.schema([
    ("iteration", pa.int32()),
    ("split", pa.string()),
    ("question_id", pa.string()),  # the question whose image and (model) answer precede the asking
    ("index", pa.int32()),
    ("seed", pa.int64()),
    ("context_answer", pa.string()),
    ("asked", pa.string()),
    ("finished", pa.bool_()),  # ended with the end of turn (not cut at sq.ask_max_new_tokens)
    ("novel", pa.bool_()),
])

TABLES: dict[str, pa.Schema] = {
    "questions": QUESTION_SCHEMA,
    "rollouts": ROLLOUT_SCHEMA,
    "samples": SAMPLE_SCHEMA,
    "sets": SET_SCHEMA,
    "train_log": TRAIN_LOG_SCHEMA,
    "eval": EVAL_SCHEMA,
    "eval_metrics": EVAL_METRIC_SCHEMA,
    "scaling_eval": EVAL_SCHEMA,  # test-time compute scaling: scaling_eval/iteration=<k>/
    "scaling": EVAL_METRIC_SCHEMA,  # scaling/iteration=<k>/: pass@1, maj@N, oracle@N, select@N for several N
    "steps": STEP_SCHEMA,
    "shards": SHARD_SCHEMA,
    "asked": ASK_SCHEMA,
}
