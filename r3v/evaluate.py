"""Evaluation: pass@1 (greedy), maj@N, oracle@N and select@N on the test split.

- pass@1   : one greedy CoT answer.
- maj@N    : majority vote over N sampled CoT answers (normalised; unparsed answers do not vote;
             a tie goes to the answer seen first; no parsed answer -> wrong).
- oracle@N : any of the N samples is right (an upper bound for any selector).
- select@N : R3V's test-time selection: the model reads the N sampled rationales in the select
             prompt and answers greedily.
With `eval.strategy` qar or both, the samples are (also) Questioner-Answerer-Reasoner chains
(r3v/sq/qar.py), and select reads the union.
Several N at once (test-time compute scaling) share one set of samples: those of N are the
first N of the largest N.
Eval sample seeds derive from (run seed, "eval", iteration, question id, index), so every
iteration's model is scored on its own reproducible samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

from r3v import prompts
from r3v.config import QARConfig
from r3v.judge import answer_key, judge_for_question, normalize
from r3v.rationale import is_rationale
from r3v.rollout import RolloutRequest, Sampler, SamplingParams, sample_seeds
from r3v.sq.qar import sample_chains


def majority(answers: Sequence[str | None], key: Callable[[str], str] = normalize) -> str | None:
    """The most frequent answer (the first of it to appear on a tie); `key` says which answers are
    the same (default: normalised text; evaluation uses `judge.answer_key`, the question's own)."""
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    counts = Counter(key(a) for a in votes)
    best = max(counts.values())
    return next(a for a in votes if counts[key(a)] == best)


def evaluate(sampler: Sampler, questions: Sequence[dict], iteration: int, run_seed: int, ns: int | Sequence[int],
             params: SamplingParams, tolerance: float, strategy: str = "cot", qar: QARConfig | None = None,
             relaxed_generic: bool = False) -> tuple[list[dict], list[dict]]:
    """(prediction rows in EVAL_SCHEMA, metric rows in EVAL_METRIC_SCHEMA) for each N in `ns`, and
    `rationale_free`: the share of greedy CoT outputs with no reasoning before their answer.

    One greedy answer, max(ns) samples per question (sample i has the same seed whatever N, so
    the samples of N are the first N of max(ns)), and one select prompt per N over those N.
    `strategy`: `cot` rationales, `qar` chains (SQ-InstructBLIP; pass@1 is the greedy chain), or
    `both`: pass@1 is the greedy CoT answer (`qar_pass@1` the greedy chain's) and maj, oracle and
    select run over the union of N rationales and N chains (named @2N).
    """
    ns = sorted({ns} if isinstance(ns, int) else set(ns))
    if not ns or ns[0] < 1:
        raise ValueError(f"sample counts must be >= 1, got {ns}")
    if strategy not in ("cot", "qar", "both"):
        raise ValueError(f"eval.strategy must be cot, qar or both, got {strategy!r}")
    greedy = SamplingParams(0.0, 1.0, params.max_new_tokens, params.stop)
    greedy_texts, sources = _sample(sampler, questions, iteration, run_seed, ns[-1], params, greedy, strategy, qar)
    # the first n of each source, for each n (both: n rationales then n chains)
    pools = {n: [[t for _, texts in sources for t in texts[j][:n]] for j in range(len(questions))] for n in ns}
    label = {n: n * len(sources) for n in ns}
    selected = {n: sampler.generate([RolloutRequest(q["id"], q["image"]["bytes"], tuple(
        prompts.select(q["question"], pools[n][j], q["choices"])), (0,))
        for j, q in enumerate(questions)], greedy) for n in ns}

    preds: list[dict] = []
    hits = Counter()
    for j, q in enumerate(questions):
        judged = partial(_prediction, q=q, iteration=iteration, tolerance=tolerance, relaxed_generic=relaxed_generic)
        for metric, text in greedy_texts[j].items():
            preds.append(judged("greedy" if metric == "pass@1" and strategy != "qar" else "qar-greedy", 0, text))
            hits[metric] += preds[-1]["correct"]
        if strategy != "qar":  # a bare `Answer: X` to the CoT prompt: what L_SEL's short target could teach
            hits["rationale_free"] += not is_rationale(greedy_texts[j]["pass@1"], q)
        samples = {name: [judged(name, i, t) for i, t in enumerate(texts[j])] for name, texts in sources}
        preds += [p for name, _ in sources for p in samples[name]]
        key = partial(answer_key, question=q)
        for n in ns:
            first, m = [p for name, _ in sources for p in samples[name][:n]], label[n]
            hits[f"oracle@{m}"] += any(p["correct"] for p in first)
            maj = majority([p["answer"] for p in first], key)
            hits[f"maj@{m}"] += maj is not None and any(p["correct"] and key(p["answer"]) == key(maj) for p in first)
            preds.append(judged(f"select@{m}", 0, selected[n][j][0].text))
            hits[f"select@{m}"] += preds[-1]["correct"]
    total = len(questions)
    names = list(greedy_texts[0]) if questions else ["pass@1"]
    names += [f"{m}@{label[n]}" for n in ns for m in ("maj", "oracle", "select")]
    names += ["rationale_free"] if strategy != "qar" else []
    metrics = [dict(iteration=iteration, metric=m, value=hits[m] / total if total else 0.0, n_questions=total)
               for m in names]
    return preds, metrics


def _sample(sampler: Sampler, questions: Sequence[dict], iteration: int, run_seed: int, n: int,
            params: SamplingParams, greedy: SamplingParams, strategy: str, qar: QARConfig | None
            ) -> tuple[list[dict[str, str]], list[tuple[str, list[list[str]]]]]:
    """(per question: its greedy texts by metric, e.g. {"pass@1": …, "qar_pass@1": …};
    [(eval row strategy, per question: its n sampled texts)] per source: CoT and/or chains)."""
    greedy_texts: list[dict[str, str]] = [{} for _ in questions]
    sources: list[tuple[str, list[list[str]]]] = []
    if strategy in ("cot", "both"):
        cot = [RolloutRequest(q["id"], q["image"]["bytes"], tuple(prompts.cot(q["question"], q["choices"])),
                              sample_seeds(run_seed, iteration, q["id"], n, tag="eval")) for q in questions]
        for j, g in enumerate(sampler.generate([RolloutRequest(r.key, r.image, r.messages, (0,)) for r in cot], greedy)):
            greedy_texts[j]["pass@1"] = g[0].text
        sources.append(("sample", [[c.text for c in outs] for outs in sampler.generate(cot, params)]))
    if strategy in ("qar", "both"):
        qc = qar or QARConfig()
        name = "pass@1" if strategy == "qar" else "qar_pass@1"
        for j, chains in enumerate(sample_chains(sampler, questions, [(0,)] * len(questions), greedy, qc)):
            greedy_texts[j][name] = chains[0].text
        seeds = [sample_seeds(run_seed, iteration, q["id"], n, tag="eval-qar") for q in questions]
        sources.append(("qar-sample", [[c.text for c in chains] for chains in
                                       sample_chains(sampler, questions, seeds, params, qc)]))
    return greedy_texts, sources


def _prediction(strategy: str, index: int, text: str, *, q: dict, iteration: int, tolerance: float,
                relaxed_generic: bool) -> dict:
    """One EVAL_SCHEMA row: `text` judged against question `q`."""
    ans, v = judge_for_question(text, q, tolerance, relaxed_generic)
    return dict(iteration=iteration, question_id=q["id"], strategy=strategy, sample_index=index, text=text,
                answer=ans, gold=q["answer"], correct=v.correct, judge_reason=v.reason)
