"""One torchrun process of a training stage: `python -m r3v.trainer.worker RUN_DIR STAGE ITERATION`.

Launched by r3v/trainer/launch.py (or by hand on each node of a multi-node job, with the same
run folder on shared storage). Joins the process group, runs the stage, and the main process
writes `train_state/<stage>/result.json` (the facts) and `progress.json` as it goes.
"""

from __future__ import annotations

import json
import os
import sys

from r3v.models import set_threads
from r3v.run import Run
from r3v.trainer import dist
from r3v.trainer.stages import STAGES, state_dir


def _write(path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    run_dir, stage, iteration = argv[0], argv[1], int(argv[2])
    run = Run.open(run_dir)
    device = run.device
    if device.type == "cpu":  # the node's cores are shared by its processes
        set_threads(max(1, run.cfg.run.torch_threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    dist.init(device)
    try:
        folder = state_dir(run, stage, iteration)
        progress = (lambda done, total: _write(folder / "progress.json", {"done": done, "total": total})) \
            if dist.is_main() else None
        facts = STAGES[stage](run, iteration, progress)
        if dist.is_main():
            _write(folder / "result.json", {**facts, "processes": dist.world(), "device": str(device)})
        dist.barrier()
    finally:
        dist.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
