"""The single-step gate, measured on the seed model's own rationales on the test questions.

Builds the embedded model (or takes it from the cache), trains the seed model M_0 and evaluates it
on the test split (greedy, and `eval.n` samples at the rollout's settings), then checks every
rationale's steps against the scene (r3v/analysis/gate.py): listing exact, look-ups, each
equation's arithmetic, per family and level, greedy and sampled, with pass@1, oracle@N and the
rationale-free and lucky shares. Exits 1 when the gate (`GATE`) is not met.

    .venv/bin/python bench/gate.py configs/embedded.yaml [key=value ...] [--name gate] [--out docs/bench/gate.json]
    .venv/bin/python bench/gate.py configs/embedded.yaml model.embedded.init_seed=1 --name gate-seed1

A second `init_seed` is the stand-in for another machine (the same code built 0.19-0.375 held-out
reading on three machines before the gate). The run folder is kept (`runs/<name>`): rerunning
resumes it, and `r3v sql runs/<name> …` inspects it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs" / "embedded.yaml"))
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--name", default="gate")
    ap.add_argument("--out", default=None, help="write the rows, failures and timings as JSON here")
    ns = ap.parse_args()

    from r3v import steps
    from r3v.analysis.gate import GATE, failures, gate_rows, markdown, records_from_store
    from r3v.config import load_config
    from r3v.run import Run, init_run

    cfg = load_config(ns.config, [*ns.overrides, f"run.name={ns.name}", "run.iterations=1"])
    run_dir = str(init_run(cfg))
    times = {}
    for step, call in (("prepare", lambda: steps.prepare(run_dir)), ("warmup", lambda: steps.warmup(run_dir)),
                       ("evaluate", lambda: steps.evaluate(run_dir, 0))):
        t0 = time.perf_counter()
        call()
        times[step] = round(time.perf_counter() - t0, 1)
        print(f"gate: {step} {times[step]} s", flush=True)
    run = Run.open(run_dir)
    rows = gate_rows(records_from_store(run.store, 0))
    missed = failures(rows)
    print(markdown(rows))
    build = json.loads((Path(run.meta["source_model"]) / "r3v_embedded.json").read_text())
    print("gate:", "met" if not missed else f"NOT met ({len(missed)} misses)")
    for m in missed:
        print("  ", m)
    if ns.out:
        Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.out).write_text(json.dumps({
            "command": " ".join(sys.argv), "run": run_dir, "gate": GATE, "met": not missed, "misses": missed,
            "seconds": times, "build": {k: v for k, v in build.items() if k != "model"},
            "model": build["model"], "rows": rows}, indent=2) + "\n")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
