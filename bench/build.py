"""The embedded model's build: the default one (what `r3v run` uses) beside the slow test tier's
shorter one (tests/model.yaml), each built in its own process into a fresh cache, timed per phase,
and the default's facts checked against what the embedded benchmark needs from it.

    .venv/bin/python bench/build.py [--out docs/bench/build.json]     # both builds, ~15 min on 2 cores
    .venv/bin/python bench/build.py --only default --keep ~/.cache/r3v   # and keep it for `r3v run`

The default build's checks were tests until the slow tier moved to the shorter build (to keep CI
under 20 minutes): the shorter build's test (tests/test_embedded.py) shows that each phase runs,
is recorded and learns; what the full pretraining reaches — reading held-out scenes exactly,
completing sums, copying lists, looking values up — is checked here. The process exits 1 when a
check fails, so a change to the build code is checked with one command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUILDS = {"default": None, "slow tier": ROOT / "tests" / "model.yaml"}

CHECKS = [  # (phase, fact, lower bound, why)
    ("vision_pretraining", "object_patch_accuracy", 0.5, "the tower tells shapes and colours apart"),
    ("reading_pretraining", "held_out_read_exactly", 0.1,
     "reads whole scenes right (an untrained model: 0; 0.375 and 0.1875 measured on two machines)"),
    ("reading_pretraining", "held_out_sums_right", 0.5, "completes single sums (0.74, 0.78 measured)"),
    ("reading_pretraining", "held_out_copied_exactly", 0.8, "copies a list in context (1.00 measured)"),
    ("reading_pretraining", "held_out_looked_up_right", 0.25,
     "looks a value up in a listing (a guess among 9 values: 0.11; 0.45 measured)"),
]


def build_once(config: Path | None, keep: str | None = None) -> dict:
    """Build with `r3v build-model` in a child process into a fresh cache (or into `keep`, which
    must not hold this build yet, and keeps it): {seconds, phase facts}."""
    from r3v.config import load_config
    from r3v.embedded.model.build import cached_build

    with tempfile.TemporaryDirectory() as tmp:
        cache = keep or tmp
        cfg = load_config(config, [f"model.cache_dir={cache}"])
        if (cached_build(cfg.model.embedded, cache) / "r3v_embedded.json").exists():
            raise SystemExit(f"{cache} already holds this build: nothing to time (give another --keep)")
        cmd = [sys.executable, "-m", "r3v.cli", "build-model", *([str(config)] if config else []),
               f"model.cache_dir={cache}"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        seconds = time.perf_counter() - t0
        facts = json.loads((Path(out) / "r3v_embedded.json").read_text())
    return {"seconds": round(seconds, 1), **{k: facts[k] for k in
                                              ("model", "parameters", "vision_pretraining", "text_pretraining",
                                               "reading_pretraining")}}


def check(facts: dict) -> list[dict]:
    return [{"fact": f"{phase}.{name}", "value": facts[phase].get(name), "at_least": bound, "why": why,
             "ok": facts[phase].get(name) is not None and facts[phase][name] > bound}
            for phase, name, bound, why in CHECKS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["default", "slow tier"], help="build only this one")
    p.add_argument("--out", help="write the results as JSON here (e.g. docs/bench/build.json)")
    p.add_argument("--keep", metavar="CACHE_DIR", help="build into this model cache and keep the builds there")
    a = p.parse_args(argv)
    results: dict = {}
    for name, config in BUILDS.items():
        if a.only and name != a.only:
            continue
        results[name] = r = build_once(config, a.keep)
        print(f"{name}: {r['seconds']:.0f} s (vision {r['vision_pretraining'].get('seconds')} s, "
              f"text {r['text_pretraining'].get('seconds')} s, reading {r['reading_pretraining'].get('seconds')} s "
              f"of training)", flush=True)
    if len(results) == 2:
        results["slow tier build / default build, time"] = round(
            results["slow tier"]["seconds"] / results["default"]["seconds"], 3)
        print(f"the slow tier's build takes {results['slow tier build / default build, time']:.2f}x the default's")
    failed = 0
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        r["checks"] = check(r)
        for c in r["checks"]:
            print(f"  {name:9s} {'ok ' if c['ok'] else 'LOW'} {c['fact']} = {c['value']} (> {c['at_least']}: {c['why']})")
        failed += name == "default" and not all(c["ok"] for c in r["checks"])
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
