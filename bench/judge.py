"""Judge throughput: outputs judged per second, on the labelled corpus' shapes and on the
embedded model's rollouts (the judge runs on every rollout: issue target 1M outputs in <= 10 s).

    .venv/bin/python bench/judge.py [--n 1000000] [--out docs/bench/judge.json]
    .venv/bin/python bench/judge.py --n 400000 --against 904e65e   # side by side with an older judge

Each output is a distinct string (a corpus output after a line of working with its own numbers,
or a rollout with its own values), so no cache sees a repeat of a whole output; golds and answers
repeat as in a real pool (N samples per question). The judge caches nothing keyed on the output
text: only on extracted answers, golds and question fields.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r3v.analysis.judge_check import load_cases, question_of  # noqa: E402
from r3v.judge import judge_for_question  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "judge_cases.jsonl"


def corpus_outputs(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    cases = load_cases(CORPUS)
    out = []
    for i in range(n):
        c = cases[i % len(cases)]
        # a distinct rationale before the case's own output: what precedes the answer varies
        text = f"Step {i}: the values are {rng.randint(0, 99)} and {rng.randint(0, 99)}.\n{c['output']}"
        out.append((text, question_of(c)))
    return out


def rollout_outputs(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    out = []
    for _ in range(n // 3 + 1):
        bars = {c: rng.randint(1, 7) for c in ("red", "blue", "green")}
        a, b = rng.sample(list(bars), 2)
        gold = bars[a] + bars[b]
        q = {"answer": str(gold), "choices": None, "question": f"Take the {a} bar. Add the {b} bar. What is the result?",
             "metadata": json.dumps({"family": "chart", "level": 1, "answer_type": "integer", "results": [gold]})}
        for _s in range(3):  # N = 3 samples per question
            said = gold + rng.choice([0, 0, 1, -1])
            reading = ", ".join(f"{c} {v}" for c, v in bars.items())
            out.append((f"Bars: {reading}. {a} {bars[a]} + {b} {bars[b]} = {said}. Answer: {said}", q))
    return out[:n]


def rate(rows: list[tuple[str, dict]], judge=judge_for_question) -> tuple[float, int]:
    t = time.perf_counter()
    right = sum(judge(text, q)[1].correct for text, q in rows)
    return len(rows) / (time.perf_counter() - t), right


def judge_at(rev: str):
    """`r3v/judge.py` as of git revision `rev`, loaded as a module of its own."""
    import importlib.util
    import subprocess
    import tempfile

    src = subprocess.run(["git", "show", f"{rev}:r3v/judge.py"], cwd=CORPUS.parents[2], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"judge_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"judge_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def side_by_side(n: int, rev: str) -> dict:
    """The judge of `rev` and this one on the same outputs, alternating, best of two each."""
    import r3v.judge as now

    then = judge_at(rev)
    out = {}
    for name, make in (("rollouts", rollout_outputs), ("corpus_shapes", corpus_outputs)):
        rows = make(n, random.Random(0))
        best = {}
        for _ in range(2):
            for label, mod in ((rev, then), ("this", now)):
                mod._judge.cache_clear()
                mod._number.cache_clear()
                per_s, _ = rate(rows, mod.judge_for_question)
                best[label] = min(best.get(label, 1e9), 1e6 / per_s)
        out[name] = {k: round(v, 2) for k, v in best.items()}
        print(f"{name}: s per million, {rev} {best[rev]:.2f} vs this {best['this']:.2f} "
              f"(ratio {best['this'] / best[rev]:.2f})", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--out", default=None)
    p.add_argument("--against", default=None, help="a git revision: time its judge beside this one")
    args = p.parse_args(argv)
    if args.against:
        return side_by_side(args.n, args.against)
    rng = random.Random(0)
    result = {"n": args.n}
    for name, make in (("rollouts", rollout_outputs), ("corpus_shapes", corpus_outputs)):
        rows = make(args.n, rng)
        per_s, right = rate(rows)
        result[name] = {"outputs_per_s": round(per_s), "seconds_per_million": round(1e6 / per_s, 2),
                        "credited": right}
        print(f"{name}: {per_s:,.0f} outputs/s = {1e6 / per_s:.2f} s per million "
              f"(target <= 10 s: {'met' if 1e6 / per_s <= 10 else 'NOT met'})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
