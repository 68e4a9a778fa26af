"""SQ-InstructBLIP's Questioner -> Answerer -> Reasoner: chains, their stopping rules, batching per
stage, bootstrapping with chains and the cot | qar | both evaluation strategies."""

import pytest

from r3v import prompts
from r3v.config import EmbeddedBenchConfig, QARConfig, load_config
from r3v.embedded.bench.suite import generate
from r3v.rollout import Completion, SamplingParams
from r3v.sq.qar import role_examples, sample_chains

QS = generate("test", 4, EmbeddedBenchConfig())


class Scripted:
    """A Sampler whose Questioner outputs are scripted per question (to test the stopping rules);
    the Answerer and Reasoner echo their prompt kind. Records each generate call's size."""

    def __init__(self, asks):
        self.asks, self.calls = asks, []

    def generate(self, requests, params):
        self.calls.append(len(requests))
        out = []
        for r in requests:
            text = r.messages[0]["content"][-1]["text"]
            if prompts.QUESTIONER_INSTRUCTION in text:
                k = text.count("\nAsked: ")
                t = self.asks[r.key][k] if k < len(self.asks[r.key]) else ""
            elif prompts.ANSWERER_INSTRUCTION in text:
                t = "ans " + text.split("\n")[0]
            else:
                t = "Answer: 1"
            out.append([Completion(t, True, 10, 2, 0.0)])
        return out


def test_empty_or_repeated_sub_questions_end_the_asking_and_stages_are_batched():
    asks = {QS[0]["id"]: ["How many red?", "How many blue?", "How many green?"],
            QS[1]["id"]: ["How many red?", " how many  RED? "],  # a repeat (normalised) ends it
            QS[2]["id"]: [""],  # nothing asked: the Reasoner answers from no facts
            QS[3]["id"]: ["What is shown?"]}
    s = Scripted(asks)
    chains = sample_chains(s, QS, [(1, 2)] * 4, SamplingParams(1.0, 1.0, 16), QARConfig(max_subquestions=3))
    assert [len(c) for c in chains] == [2, 2, 2, 2]
    assert [len(c[0].pairs) for c in chains] == [3, 1, 0, 1]
    assert chains[0][0].pairs[1] == ("How many blue?", "ans How many blue?")
    # each stage is one call over all chains still asking (Questioner, then Answerer), K=3 rounds:
    # Q 8 -> A 6 kept; Q 6 -> A 2 kept; Q 2 -> A 2 kept; then the Reasoner over all 8
    assert s.calls == [8, 6, 6, 2, 2, 2, 8]
    ex = role_examples(QS[0], [{"question": q, "answer": a} for q, a in chains[0][0].pairs], "Answer: 1")
    assert len(ex) == 7 and ex[2].target == "How many blue?" and "Asked: How many red?" in \
        ex[2].messages[0]["content"][-1]["text"]


@pytest.mark.slow
def test_chains_on_the_real_model_and_eval_strategies(embedded_model):
    from r3v.evaluate import evaluate
    from r3v.models import load_model, load_processor
    from r3v.rollout.transformers_backend import TransformersSampler

    sampler = TransformersSampler(load_model(embedded_model), load_processor(embedded_model), progress=False)
    params = SamplingParams(1.0, 1.0, 24)
    cfg = QARConfig(max_subquestions=2, question_max_new_tokens=12, answer_max_new_tokens=8)
    chains = sample_chains(sampler, QS[:2], [(5, 6), (7,)], params, cfg)
    assert [len(c) for c in chains] == [2, 1] and all(len(c.pairs) <= 2 for cs in chains for c in cs)
    again = sample_chains(sampler, QS[:2], [(5, 6), (7,)], params, cfg)
    # seeded: the same chains again (times differ)
    assert [[(c.pairs, c.text) for c in cs] for cs in chains] == [[(c.pairs, c.text) for c in cs] for cs in again]
    for strategy, names in (("cot", ["pass@1", "maj@2", "oracle@2", "select@2", "rationale_free"]),
                            ("qar", ["pass@1", "maj@2", "oracle@2", "select@2"]),
                            ("both", ["pass@1", "qar_pass@1", "maj@4", "oracle@4", "select@4", "rationale_free"])):
        preds, metrics = evaluate(sampler, QS[:2], 0, 0, 2, params, 0.05, strategy, cfg)
        assert [m["metric"] for m in metrics] == names
        kinds = {p["strategy"] for p in preds}
        assert ("qar-sample" in kinds) == (strategy != "cot") and ("sample" in kinds) == (strategy != "qar")
        per_q = [p for p in preds if p["question_id"] == QS[0]["id"] and p["strategy"].endswith("sample")]
        assert len(per_q) == (4 if strategy == "both" else 2)


@pytest.mark.slow
def test_bootstrapping_with_chains(tmp_path, model_overrides, seed_model):
    """One iteration with chains, from the session's trained M_0 (no seed stage of its own)."""
    from r3v import steps
    from r3v.run import init_run
    from r3v.store import Store

    cfg = load_config(None, [
        *model_overrides, f"run.root={tmp_path}", "run.name=qar", "run.iterations=1",
        "data.embedded.n_seed=0", "data.embedded.n_train=24", "data.embedded.n_test=6", "warmup.enabled=false",
        f"model.source={seed_model}", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
        "rollout.max_new_tokens=48", "rollout.n=2", "qar.rollout_n=2", "eval.n=2", "eval.strategy=both"])
    run_dir = str(init_run(cfg))
    steps.prepare(run_dir)
    steps.warmup(run_dir)
    for step in (steps.rollout, steps.judge, steps.build_sets, steps.train, steps.evaluate):
        step(run_dir, 1)
    store = Store(run_dir)
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    kinds = q("SELECT prompt_kind, count(*) AS n, count(chain) AS chains, min(sample_index) AS lo, "
              "max(sample_index) AS hi FROM samples GROUP BY 1 ORDER BY 1")
    assert kinds == [{"prompt_kind": "cot", "n": 48, "chains": 0, "lo": 0, "hi": 1},
                     {"prompt_kind": "qar", "n": 48, "chains": 48, "lo": 2, "hi": 3}]
    sizes = {r["kind"]: r["n"] for r in q("SELECT kind, count(*) AS n FROM sets GROUP BY 1")}
    assert sizes.get("qar", 0) == q("SELECT count(*) AS n FROM qar_chains")[0]["n"]
    # negative chains feed refine and select like any negative
    assert q("SELECT count(*) AS n FROM samples WHERE prompt_kind = 'qar' AND NOT correct")[0]["n"] > 0
    metrics = {m["metric"] for m in q("SELECT metric FROM src_eval_metrics WHERE iteration = 1")}
    assert metrics == {"pass@1", "qar_pass@1", "maj@4", "oracle@4", "select@4", "rationale_free"}
