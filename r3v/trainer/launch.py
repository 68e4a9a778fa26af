"""Run a training stage in this process, or data-parallel in `train.processes` processes
launched by torchrun (`python -m torch.distributed.run ... -m r3v.trainer.worker RUN STAGE K`).

The launching process waits for torchrun, relays the main process's progress and returns the
facts it wrote. A rank that dies (OOM, SIGKILL, a lost node) makes torchrun stop the others and
exit non-zero: that is a `TrainingFailed` naming the exit, the log and the last mid-training
checkpoint, from which a retry resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from r3v.run import Run
from r3v.trainer.stages import STAGES, OnProgress, state_dir


class TrainingFailed(RuntimeError):
    """A torchrun-launched training exited without finishing."""


def torchrun_command(run: Run, stage: str, iteration: int) -> list[str]:
    tc = run.cfg.train
    return [sys.executable, "-m", "torch.distributed.run", *(tc.torchrun_args or ["--standalone"]),
            f"--nproc-per-node={tc.processes}", "-m", "r3v.trainer.worker", str(run.dir), stage, str(iteration)]


def run_stage(run: Run, stage: str, iteration: int, progress: OnProgress | None = None) -> dict:
    """The stage's facts, trained in this process (train.processes=1) or under torchrun."""
    tc = run.cfg.train
    if tc.processes == 1 and not tc.torchrun_args:
        return STAGES[stage](run, iteration, progress)
    folder = state_dir(run, stage, iteration)
    folder.mkdir(parents=True, exist_ok=True)
    result, prog, log_path = folder / "result.json", folder / "progress.json", folder / "torchrun.log"
    result.unlink(missing_ok=True)
    prog.unlink(missing_ok=True)
    cmd = torchrun_command(run, stage, iteration)
    with open(log_path, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if progress and prog.exists():
                    try:
                        p = json.loads(prog.read_text())
                    except ValueError:  # caught mid-write
                        continue
                    progress(p["done"], p["total"])
        except BaseException:  # the task itself was cancelled or killed: take the ranks down with it
            proc.terminate()
            proc.wait()
            raise
    if proc.returncode != 0 or not result.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        step = checkpoint_step(folder)
        resume = (f"a retry resumes from its checkpoint after step {step}" if step
                  else "no mid-training checkpoint was written yet (train.save_every): a retry starts it again")
        raise TrainingFailed(f"{stage} (iteration {iteration}) with train.processes={tc.processes}: torchrun exited "
                             f"with code {proc.returncode}; {resume}. Log: {log_path}; its end:\n{tail}")
    return json.loads(result.read_text())


def checkpoint_step(folder) -> int:
    """Optimizer steps done by the last mid-training checkpoint in `folder` (0: none)."""
    meta = folder / "checkpoint" / "step.json"
    return json.loads(meta.read_text())["step"] if meta.exists() else 0
