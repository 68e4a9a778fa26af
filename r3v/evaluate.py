"""Evaluation: pass@1 (greedy), maj@N, oracle@N and select@N on the test split.

- pass@1   : one greedy CoT answer.
- maj@N    : majority vote over N sampled CoT answers (normalised; unparsed answers do not vote;
             a tie goes to the answer seen first; no parsed answer -> wrong).
- oracle@N : any of the N samples is right (an upper bound for any selector).
- select@N : R3V's test-time selection: the model reads the N sampled rationales in the select
             prompt and answers greedily.
Several N at once (test-time compute scaling) share one set of samples: those of N are the
first N of the largest N.
Eval sample seeds derive from (run seed, "eval", iteration, question id, index), so every
iteration's model is scored on its own reproducible samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from r3v import prompts
from r3v.judge import judge_for_question, normalize
from r3v.rollout import RolloutRequest, Sampler, SamplingParams, sample_seeds


def majority(answers: Sequence[str | None]) -> str | None:
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    counts = Counter(normalize(a) for a in votes)
    best = max(counts.values())
    return next(a for a in votes if counts[normalize(a)] == best)


def evaluate(sampler: Sampler, questions: Sequence[dict], iteration: int, run_seed: int, ns: int | Sequence[int],
             params: SamplingParams, tolerance: float) -> tuple[list[dict], list[dict]]:
    """(prediction rows in EVAL_SCHEMA, metric rows in EVAL_METRIC_SCHEMA) for each N in `ns`.

    One greedy answer, max(ns) samples per question (sample i has the same seed whatever N, so
    the samples of N are the first N of max(ns)), and one select prompt per N over those N.
    """
    ns = sorted({ns} if isinstance(ns, int) else set(ns))
    if not ns or ns[0] < 1:
        raise ValueError(f"sample counts must be >= 1, got {ns}")
    greedy = SamplingParams(0.0, 1.0, params.max_new_tokens, params.stop)
    cot = [RolloutRequest(q["id"], q["image"]["bytes"], tuple(prompts.cot(q["question"], q["choices"])),
                          sample_seeds(run_seed, iteration, q["id"], ns[-1], tag="eval")) for q in questions]
    greedy_out = sampler.generate([RolloutRequest(r.key, r.image, r.messages, (0,)) for r in cot], greedy)
    sampled = sampler.generate(cot, params)
    selected = {n: sampler.generate([RolloutRequest(q["id"], q["image"]["bytes"], tuple(
        prompts.select(q["question"], [c.text for c in outs[:n]], q["choices"])), (0,))
        for q, outs in zip(questions, sampled)], greedy) for n in ns}

    preds: list[dict] = []
    hits = Counter()
    for j, (q, g, outs) in enumerate(zip(questions, greedy_out, sampled)):
        def row(strategy: str, idx: int, text: str, q=q) -> tuple[str | None, bool]:
            ans, v = judge_for_question(text, q, tolerance)
            preds.append(dict(iteration=iteration, question_id=q["id"], strategy=strategy, sample_index=idx,
                              text=text, answer=ans, gold=q["answer"], correct=v.correct, judge_reason=v.reason))
            return ans, v.correct

        hits["pass@1"] += row("greedy", 0, g[0].text)[1]
        judged = [row("sample", i, c.text) for i, c in enumerate(outs)]
        for n in ns:
            first = judged[:n]
            hits[f"oracle@{n}"] += any(ok for _, ok in first)
            maj = majority([a for a, _ in first])
            hits[f"maj@{n}"] += maj is not None and any(ok and normalize(a) == normalize(maj) for a, ok in first)
            hits[f"select@{n}"] += row(f"select@{n}", 0, selected[n][j][0].text)[1]
    total = len(questions)
    names = ["pass@1"] + [f"{m}@{n}" for n in ns for m in ("maj", "oracle", "select")]
    metrics = [dict(iteration=iteration, metric=m, value=hits[m] / total if total else 0.0, n_questions=total)
               for m in names]
    return preds, metrics
