"""The single-step gate: are the steps a chain is made of reliable in the model's own rationales?

Self-training can only chain steps that each hold already (Lee et al., ICML 2025: small
transformers extend their reach one level a round only where each step is near-perfect; without
that, errors avalanche). On the embedded benchmark every rationale writes its steps out
(`Table: red 3, blue 7. 35 + red 3 = 38. 38 - blue 7 = 31. Answer: 31`), so each can be checked
against the scene's truth kept in the question's metadata and against the rationale's own words:

- `listing`: the reading is exactly the scene's (every item, in order);
- `lookup`: a value written for a named operand (`+ red 3`) is what the rationale's *own*
  listing says for that name (for clevr_math: `total` is the listing's length, a colour is its
  count there) — looking up, not reading;
- `arithmetic`: each written equation `a ± b = c` is right;
- `rationale_free`: the output holds no reasoning before its answer (`is_rationale`);
- `lucky`: judged right with a wrong reading or intermediate result (`error_kinds`).

Measured per family and level, on greedy outputs and on samples (`gate_rows`); `GATE` holds the
floors the seed model must meet (issue 30), `failures` names what misses them.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable

from r3v.analysis.error_kinds import error_kind
from r3v.rationale import _READING, is_rationale, reading_items

GATE = {"listing": 0.95, "lookup": 0.98, "arithmetic_greedy": 0.98, "arithmetic_sample": 0.95}
"""The floors of the gate: listing exact, look-ups, and each equation's arithmetic, greedy and sampled."""
_EQUATION = re.compile(r"(-?\d+) ([-+]) (?:([a-z]+) )?(-?\d+) = (-?\d+)")


def truth_listing(meta: dict) -> list[str]:
    family = meta["family"]
    if family == "clevr_math":
        return list(meta["objects"])
    return [f"{k} {v}" for k, v in meta[_READING[family][1]].items()]


def own_values(items: list[str], family: str) -> dict[str, int]:
    """What the rationale's own listing says a named operand is."""
    if family == "clevr_math":
        out = {"total": len(items)}
        for x in items:
            colour = x.split(" ")[0]
            out[colour] = out.get(colour, 0) + 1
        return out
    out = {}
    for x in items:
        name, _, value = x.rpartition(" ")
        if value.isdigit():
            out[name] = int(value)
    return out


def step_facts(text: str, meta: dict) -> dict:
    """Per-step facts of one rationale: listing exact (bool or None: no listing), look-ups and
    equations (counts right of written)."""
    family = meta["family"]
    items = reading_items(text, family)
    eqs = _EQUATION.findall(text or "")
    out = {"listing": None if items is None else items == truth_listing(meta),
           "has_listing": items is not None, "equations": len(eqs),
           "arithmetic_right": sum((int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c)
                                   for a, op, _, b, c in eqs),
           "lookups": 0, "lookups_right": 0}
    if items is not None:
        values = own_values(items, family)
        for _, _, name, b, _ in eqs:
            if name:
                out["lookups"] += 1
                # a colour the listing lacks counts 0 objects (clevr_math); elsewhere it is a wrong look-up
                expected = values.get(name, 0 if family == "clevr_math" and name != "total" else None)
                out["lookups_right"] += expected == int(b)
    return out


def gate_rows(records: Iterable[dict]) -> list[dict]:
    """`records`: {metadata, question, strategy ('greedy' | 'sample'), question_id, text, correct,
    judge_reason}. Returns one row per (family, level, strategy), plus per (family, 'all') and
    ('all', 'all'): the shares of listings exact (of outputs), look-ups right, equations right,
    rationale-free and lucky outputs, accuracy, and for samples oracle (≥1 of a question's right)."""
    acc: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    oracle: dict[tuple, dict[str, bool]] = defaultdict(dict)
    for r in records:
        meta = json.loads(r["metadata"]) if isinstance(r["metadata"], str) else r["metadata"]
        if meta.get("family") not in _READING:
            continue
        c = step_facts(r["text"], meta)
        kind = error_kind(r["text"], r["correct"], r["judge_reason"], meta, r["question"])
        free = not is_rationale(r["text"], {"metadata": meta})
        for key in ((meta["family"], meta["level"], r["strategy"]), (meta["family"], "all", r["strategy"]),
                    ("all", "all", r["strategy"])):
            a = acc[key]
            a["n"] += 1
            a["correct"] += bool(r["correct"])
            a["listing"] += bool(c["listing"])
            for k in ("equations", "arithmetic_right", "lookups", "lookups_right"):
                a[k] += c[k]
            a["rationale_free"] += free
            a["lucky"] += kind == "lucky"
            o = oracle[key]
            o[r["question_id"]] = o.get(r["question_id"], False) or bool(r["correct"])
    rows = []
    for (family, level, strategy), a in acc.items():
        n = a["n"]
        rows.append({
            "family": family, "level": level, "strategy": strategy, "outputs": int(n),
            "accuracy": a["correct"] / n, "oracle": sum(oracle[(family, level, strategy)].values())
            / len(oracle[(family, level, strategy)]),
            "listing": a["listing"] / n,
            "lookup": a["lookups_right"] / a["lookups"] if a["lookups"] else None,
            "arithmetic": a["arithmetic_right"] / a["equations"] if a["equations"] else None,
            "equations": int(a["equations"]), "lookups": int(a["lookups"]),
            "rationale_free": a["rationale_free"] / n, "lucky": a["lucky"] / n,
        })
    order = {"greedy": 0, "sample": 1}
    return sorted(rows, key=lambda r: (r["family"] == "all", r["family"], r["level"] == "all", str(r["level"]),
                                       order.get(r["strategy"], 2)))


def failures(rows: list[dict], gate: dict[str, float] = GATE) -> list[str]:
    """What misses the gate, per family and level (both strategies for listing and look-up)."""
    out = []
    for r in rows:
        if r["family"] == "all" or r["level"] == "all":
            continue
        where = f"{r['family']} level {r['level']} ({r['strategy']})"
        checks = [("listing", r["listing"], gate["listing"]), ("lookup", r["lookup"], gate["lookup"]),
                  ("arithmetic", r["arithmetic"], gate[f"arithmetic_{r['strategy']}"])]
        out += [f"{where}: {name} {value:.3f} < {floor}" for name, value, floor in checks
                if value is not None and value < floor]
    return out


def records_from_store(store, iteration: int) -> list[dict]:
    """The evaluation outputs of `iteration` (greedy and sampled CoT) with their questions."""
    return store.query(
        "SELECT e.question_id, e.strategy, e.text, e.correct, e.judge_reason, q.metadata, q.question "
        "FROM src_eval e JOIN questions q ON q.id = e.question_id AND q.split = 'test' "
        f"WHERE e.iteration = {int(iteration)} AND e.strategy IN ('greedy', 'sample')").to_pylist()


def markdown(rows: list[dict]) -> str:
    cols = ["family", "level", "strategy", "outputs", "accuracy", "oracle", "listing", "lookup", "arithmetic",
            "rationale_free", "lucky"]
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
