"""Mid-training checkpoints: everything a killed training needs to go on from where it was.

A checkpoint (`<state dir>/checkpoint/`, written atomically by the main process every
`train.save_every` optimizer steps) holds the trainable parameters (safetensors), the
optimizer, schedule and gradient-scaler states, every process's RNG states, the optimizer step
(the position in the data order follows from it: the order is a seeded function of the step),
the log records so far and a fingerprint of the training (examples, steps, batch, seed). A
checkpoint whose fingerprint differs from the training about to run is not used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from r3v.store import atomic_dir
from r3v.trainer import dist

log = logging.getLogger(__name__)
WEIGHTS, STATE = "trainable.safetensors", "state.pt"


def _rng() -> dict:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_initialized():  # this process's GPU only (not every GPU's context)
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def _set_rng(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(folder: Path, params: dict[str, torch.Tensor], opt, sched, scaler, step: int, records: list[dict],
         fingerprint: dict) -> None:
    """Checkpoint after `step` optimizer steps (called by every process; the main one writes)."""
    from safetensors.torch import save_file

    rngs = dist.gather(_rng())
    if not dist.is_main():
        return
    with atomic_dir(Path(folder) / "checkpoint") as tmp:
        save_file({n: p.detach().cpu().contiguous() for n, p in params.items()}, str(tmp / WEIGHTS))
        torch.save({"step": step, "records": records, "fingerprint": fingerprint, "rng": rngs,
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None}, tmp / STATE)
        (tmp / "step.json").write_text(json.dumps({"step": step}))
    log.info("training state saved after step %d in %s", step, folder)


def load(folder: Path | None, params: dict[str, torch.Tensor], opt, sched, scaler,
         fingerprint: dict) -> tuple[int, list[dict]]:
    """Restore the last checkpoint under `folder` into the given objects; (steps done, records).
    (0, []) when there is none, or it belongs to another training."""
    from safetensors.torch import load_file

    path = Path(folder) / "checkpoint" if folder is not None else None
    if path is None or not (path / STATE).exists():
        return 0, []
    state = torch.load(path / STATE, map_location="cpu", weights_only=False)
    if state["fingerprint"] != fingerprint:
        log.warning("%s belongs to another training (%s, now %s): starting from step 0", path,
                    state["fingerprint"], fingerprint)
        return 0, []
    weights = load_file(str(path / WEIGHTS))
    if set(weights) != set(params):
        raise ValueError(f"{path}: its trainable parameters are not this model's "
                         f"({len(weights)} saved, {len(params)} here); delete the folder to start over")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    if len(rngs) == dist.world():
        _set_rng(rngs[dist.rank()])
    else:
        log.warning("%s was saved by %d processes, now %d: RNG states not restored (dropout masks differ)",
                    path, len(rngs), dist.world())
    log.info("resuming training from %s after step %d", path, state["step"])
    return state["step"], state["records"]


def clear(folder: Path | None) -> None:
    """Drop the checkpoint once the finished training's outputs are written."""
    import shutil

    if folder is not None and dist.is_main():
        shutil.rmtree(Path(folder) / "checkpoint", ignore_errors=True)
