"""Why a rationale is wrong: format, perception, arithmetic or reasoning.

The embedded benchmark keeps each scene's ground truth in the question's metadata, and its gold
rationales read the scene first ("Objects: …." / "Bars: red 30, …." / "Table: red 3, ….") before
any arithmetic. A judged rationale is then classified, in this order:

- `right`      : judged correct, with a right reading of the scene (or nothing to check against);
- `lucky`      : judged correct although the reading is wrong, or the intermediate results are
                 not the gold chain's (where the metadata keeps them): a false positive, which
                 the SFT set then teaches as if it were a good rationale;
- `format`     : no final answer could be parsed (`unparsed`), or it hedges (`ambiguous`);
- `perception` : the reading of the scene is missing or differs from the truth where the
                 question needs it;
- `arithmetic` : the reading is right but a written step `a + b - c = d` is wrong;
- `reasoning`  : reading and written arithmetic are right, the answer is still wrong (a step
                 left out, the wrong bar added, a subtraction written as an addition);
- `unknown`    : the question has no ground truth to check against (user data).

This is what self-refine and self-select are meant to fix: perception and arithmetic slips, not
format failures. `r3v errors RUN` prints the mix per family for the pool or the evaluation.
"""

from __future__ import annotations

import json
from collections import Counter

from r3v.rationale import arithmetic_is_right, reading_is_right, steps_are_right

ERROR_KINDS = ("right", "lucky", "format", "perception", "arithmetic", "reasoning", "unknown")


def error_kind(text: str, correct: bool, judge_reason: str, metadata: str | dict | None, question: str = "") -> str:
    """The kind of a judged rationale (see the module docstring)."""
    meta = json.loads(metadata) if isinstance(metadata, str) else (metadata or {})
    reading = reading_is_right(text or "", meta, question)
    if correct:
        return "lucky" if reading is False or steps_are_right(text or "", meta) is False else "right"
    if judge_reason in ("unparsed", "ambiguous"):
        return "format"
    if reading is None:
        return "unknown"
    if not reading:
        return "perception"
    return "reasoning" if arithmetic_is_right(text or "") else "arithmetic"


SOURCES = {  # source -> SQL over the run's views: (text, correct, judge_reason, metadata, question)
    "samples": "SELECT s.rationale AS text, s.correct, s.judge_reason, q.metadata, q.question FROM samples s "
               "JOIN questions q ON q.id = s.question_id AND q.split = 'train' WHERE s.iteration = {it}",
    "eval": "SELECT e.text, e.correct, e.judge_reason, q.metadata, q.question FROM src_eval e "
            "JOIN questions q ON q.id = e.question_id AND q.split = 'test' "
            "WHERE e.iteration = {it} AND e.strategy = 'sample'",
}


def breakdown(store, iteration: int, source: str = "eval") -> list[dict]:
    """Rows {family, n, right, lucky, format, perception, arithmetic, reasoning, unknown} (shares of n),
    one per family plus `all`, for the sampled rationales of `iteration` (`eval`: on the test
    split; `samples`: the iteration's rollouts on the train split)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    rows = store.query(SOURCES[source].format(it=int(iteration))).to_pylist()
    counts: dict[str, Counter] = {}
    for r in rows:
        family = json.loads(r["metadata"] or "{}").get("family", "unknown")
        kind = error_kind(r["text"], r["correct"], r["judge_reason"], r["metadata"], r["question"])
        for f in (family, "all"):
            counts.setdefault(f, Counter())[kind] += 1
    out = []
    for f in sorted(counts, key=lambda f: (f == "all", f)):
        n = sum(counts[f].values())
        out.append({"family": f, "n": n, **{k: counts[f][k] / n for k in ERROR_KINDS}})
    return out
