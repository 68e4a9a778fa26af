"""`r3v judge-check FILE`: the judge measured against labelled outputs.

FILE is JSON Lines, one labelled output per line:

    {"benchmark": "geoqa", "output": "... 故选B", "gold": "B", "choices": ["30°", "40°", "50°", "60°"],
     "expected": true, "reason": "GeoQA's Chinese marker"}

`benchmark` picks the scorer the canonical adapters give that benchmark's questions (`tabmwp`,
`chartqa`, `clevr_math`, `geoqa`, `m3cot`, `embedded`, or `generic`: no scorer); `metadata`
(optional) is merged into the question's metadata (a TabMWP `unit`, a `scorer`), `question`
(optional) is the question text (ChartQA's year questions), `choices` may be null. The report gives
agreement per benchmark and lists every disagreement with its reason, so a user can measure the
judge on outputs of their own model before trusting it with training labels.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from r3v.judge import judge_for_question

SCORERS = {
    "tabmwp": {"scorer": "tabmwp"},
    "chartqa": {"scorer": "relaxed"},
    "clevr_math": {"answer_type": "integer"},
    "embedded": {"answer_type": "integer"},
    "geoqa": {},
    "m3cot": {},
    "generic": {},
}


def load_cases(path: str | Path) -> list[dict]:
    """The labelled cases of a JSONL file; a bad line raises ValueError naming the file and line."""
    cases = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        missing = [k for k in ("benchmark", "output", "gold", "expected") if k not in case]
        if missing:
            raise ValueError(f"{path}:{n}: missing {', '.join(missing)}")
        if case["benchmark"] not in SCORERS:
            raise ValueError(f"{path}:{n}: unknown benchmark {case['benchmark']!r} (known: {', '.join(SCORERS)})")
        if not isinstance(case["expected"], bool):
            raise ValueError(f"{path}:{n}: expected must be true or false, got {case['expected']!r}")
        cases.append({**case, "line": n})
    return cases


def question_of(case: dict) -> dict:
    """The canonical question row a case is judged against."""
    meta = {**SCORERS[case["benchmark"]], **(case.get("metadata") or {})}
    return {"answer": str(case["gold"]), "choices": case.get("choices") or None,
            "question": case.get("question") or "", "metadata": json.dumps(meta)}


def agreement(cases: list[dict], tolerance: float = 0.05) -> dict:
    """{benchmark: {"cases", "agree", "agreement", "false_credit", "false_reject", "disagreements"}}
    and an `all` row."""
    out: dict[str, dict] = defaultdict(lambda: {"cases": 0, "agree": 0, "false_credit": 0, "false_reject": 0,
                                                "disagreements": []})
    for case in cases:
        answer, verdict = judge_for_question(case["output"], question_of(case), tolerance)
        for key in (case["benchmark"], "all"):
            row = out[key]
            row["cases"] += 1
            if verdict.correct == case["expected"]:
                row["agree"] += 1
                continue
            row["false_credit" if verdict.correct else "false_reject"] += 1
            if key != "all":
                row["disagreements"].append({"line": case["line"], "id": case.get("id"), "output": case["output"],
                                             "gold": case["gold"], "extracted": answer, "verdict": verdict.reason,
                                             "expected": case["expected"], "reason": case.get("reason")})
    for row in out.values():
        row["agreement"] = row["agree"] / row["cases"] if row["cases"] else 0.0
    return dict(out)


def report(result: dict) -> str:
    lines = ["| benchmark | cases | agreement | wrongly credited | wrongly rejected |", "|---|---|---|---|---|"]
    for name in sorted(result, key=lambda k: (k == "all", k)):
        r = result[name]
        lines.append(f"| {name} | {r['cases']} | {r['agreement']:.3f} | {r['false_credit']} | {r['false_reject']} |")
    for name in sorted(k for k in result if k != "all"):
        for d in result[name]["disagreements"]:
            lines.append(f"- {name} line {d['line']}: {d['output'][:80]!r} gold {d['gold']!r}: judged "
                         f"{d['verdict']} (read {d['extracted']!r}), labelled {'right' if d['expected'] else 'wrong'}"
                         + (f" ({d['reason']})" if d.get("reason") else ""))
    return "\n".join(lines)
