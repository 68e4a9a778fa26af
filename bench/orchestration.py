"""Orchestration overhead: what Prefect and r3v's bookkeeping add to an iteration's wall time.

    .venv/bin/python bench/orchestration.py                          # embedded default, 1 iteration
    .venv/bin/python bench/orchestration.py run.iterations=2 orchestration.shard_size=100

Runs the embedded default (configs/embedded.yaml, here 1 iteration) as the real flow, in-process
on Prefect's temporary local API as `r3v run` does, in a fresh run folder, and compares

    flow wall time        measured around the flow call (API start-up included), and Prefect's
                          own flow-run duration (start to end, from the API)
    steps' own compute    the sum of every step's recorded wall time (steps/, measured inside
                          the step functions: model loads, sampling, training, evaluation)

overhead = flow wall time − steps' compute: task and flow-run bookkeeping with the API, result
persistence for cache keys, artifacts, the shard layout, the run lock, logging. Target: ≤ 3%.
The embedded model is built once into --cache (not timed when already there). Writes the
numbers as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="key=value on top of configs/embedded.yaml run.iterations=1")
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/r3v"), help="model.cache_dir")
    p.add_argument("--out", default="docs/bench/orchestration.json")
    args = p.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from r3v.config import load_config
    from r3v.embedded.model.build import ensure_built

    root = tempfile.mkdtemp(prefix="r3v-bench-orch-")
    overrides = ["run.iterations=1", f"run.root={root}", "run.name=bench", f"model.cache_dir={args.cache}",
                 *args.overrides]
    cfg = load_config("configs/embedded.yaml", overrides)
    ensure_built(cfg.model.embedded, args.cache)  # not part of the measured run

    from prefect.client.orchestration import get_client

    from flows.iterate import r3v_flow

    t0 = time.perf_counter()
    state = r3v_flow(config="configs/embedded.yaml", overrides=overrides, return_state=True)
    wall = time.perf_counter() - t0
    state.result()  # raises if the flow failed

    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(state.state_details.flow_run_id)
        prefect_wall = (fr.end_time - fr.start_time).total_seconds()

    from r3v.store import Store

    steps = Store(cfg.run_dir).query("SELECT iteration, step, seconds FROM src_steps ORDER BY finished_at").to_pylist()
    compute = sum(s["seconds"] for s in steps)
    shards = Store(cfg.run_dir).query("SELECT count(*) AS n FROM src_shards").to_pylist()[0]["n"]
    res = {
        "config": "configs/embedded.yaml " + " ".join(args.overrides), "iterations": cfg.run.iterations,
        "shards": shards, "steps": {f"{s['step']}-it{s['iteration']}": round(s["seconds"], 2) for s in steps},
        "steps_compute_s": round(compute, 2), "flow_wall_s": round(wall, 2), "prefect_flow_run_s": round(prefect_wall, 2),
        "overhead_s": round(wall - compute, 2), "overhead_share": round((wall - compute) / wall, 4),
        "overhead_in_flow_run_s": round(prefect_wall - compute, 2),
        "overhead_in_flow_run_share": round((prefect_wall - compute) / prefect_wall, 4),
    }
    print(f"\nflow wall time      {wall:8.1f} s  (Prefect's flow-run duration {prefect_wall:.1f} s)")
    print(f"steps' own compute  {compute:8.1f} s  ({len(steps)} steps, {shards} rollout shards)")
    print(f"overhead            {wall - compute:8.1f} s  = {100 * (wall - compute) / wall:.2f}% of the wall time "
          f"({100 * (prefect_wall - compute) / prefect_wall:.2f}% of the flow run's own duration)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"written to {args.out}; run folder {cfg.run_dir}")


if __name__ == "__main__":
    main()
