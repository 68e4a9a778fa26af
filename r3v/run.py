"""A run folder: its frozen config, metadata, models by iteration, its lock (one writer). Its step
ledger, what is finished, is r3v/ledger.py."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from r3v.config import Config, ConfigError, affects_results, config_from_dict, leaves
from r3v.rollout import make_sampler
from r3v.store import Store, atomic_write_text

log = logging.getLogger(__name__)


class RunConfigMismatch(ConfigError):
    """A run folder already holds a run made with another config."""


@dataclass
class Run:
    dir: Path
    cfg: Config
    store: Store

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        path = run_dir / "config.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
        return cls(run_dir, config_from_dict(yaml.safe_load(path.read_text()), str(path)), Store(run_dir))

    @property
    def meta(self) -> dict:
        return run_meta(self.dir) if (self.dir / "run.json").exists() else {}

    def update_meta(self, **kv) -> None:
        atomic_write_text(self.dir / "run.json", json.dumps(self.meta | kv, indent=2))

    def questions(self, split: str) -> list[dict]:
        return self.store.read("questions", split=split).to_pylist()

    def adapter(self, iteration: int) -> Path | None:
        """The adapter of M_iteration (None for the seed model, iteration 0)."""
        if iteration <= 0:
            return None
        p = self.dir / "checkpoints" / f"iteration={iteration}"
        if not p.exists():
            raise FileNotFoundError(f"{p}: the model of iteration {iteration} has not been trained")
        return p

    def sampler(self, iteration: int):
        """The configured rollout backend loaded with M_iteration (the seed model + its adapter)."""
        adapter = self.adapter(iteration)
        return make_sampler(self.cfg.rollout, self.meta["base_model"], str(adapter) if adapter else None,
                            self.cfg.model.dtype, max_lora_rank=self.cfg.train.lora_r, seed=self.cfg.run.seed,
                            device=self.device)

    @property
    def device(self):
        """The torch device of this process (`run.device`; under torchrun, its local rank's GPU)."""
        from r3v.device import resolve

        return resolve(self.cfg.run.device)

    def model_ref(self, iteration: int) -> str:
        adapter = self.adapter(iteration)
        if adapter is None:
            return f"{self.meta['base_model']}@none"
        return f"{self.meta['base_model']}@{json.loads((adapter / 'manifest.json').read_text())['adapter_hash']}"


PREPARE_READS = ("data.", "model.")
"""The config keys the prepare step reads (the questions and the base model)."""


def changed_keys(old: Config, new: Config) -> dict[str, tuple]:
    """{key: (old value, new value)} of the keys that differ and change results (`affects_results`)."""
    a, b = leaves(old), leaves(new)
    return {k: (a[k][0], b[k][0]) for k in sorted(a) if a[k][0] != b[k][0]
            and (affects_results(k, old) or affects_results(k, new))}


def init_run(cfg: Config) -> Path:
    """Create the run folder with its frozen config, or check an existing one has the same config.

    A run folder keeps the config it was made with, except where nothing computed yet depends on
    the change: a run with no finished step takes the new config whole (a value fixed after a run
    failed before producing anything), and a run whose only finished step is `prepare` takes any
    change outside `data.*` and `model.*` (what prepare read). Otherwise it is RunConfigMismatch."""
    run_dir = cfg.run_dir.resolve()
    path = run_dir / "config.yaml"
    if path.exists():
        old = config_from_dict(yaml.safe_load(path.read_text()), str(path))
        if old.hash() != cfg.hash():
            changed = changed_keys(old, cfg)
            # "<iteration>/<step>" of the finished steps, and any half-done training or rollout (made
            # with the old config too)
            finished = [f"{p.parent.name.split('=', 1)[1]}/{p.name.split('=', 1)[1]}"
                        for p in sorted((run_dir / "steps").glob("iteration=*/step=*"))]
            finished += [f"-/{part}" for part in ("train_state", "shards")
                         if (run_dir / part).is_dir() and any((run_dir / part).iterdir())]
            names = {f.split("/", 1)[1] for f in finished}
            blocked = [k for k in changed if names - {"prepare"} or (names and k.startswith(PREPARE_READS))]
            diff = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            if blocked:
                raise RunConfigMismatch(
                    f"{run_dir} holds a run with another config (hash {old.hash()} != {cfg.hash()}; changed: {diff}), "
                    f"and steps computed with the old one are finished ({', '.join(finished)}). Use another "
                    f"run.name, or delete the folder to start over.")
            log.warning("%s: nothing finished depends on the changed keys (%s): the run takes the new config",
                        run_dir, diff)
            path.write_text(f"# r3v run config, hash {cfg.hash()}. Rerun: r3v run {path}\n" + cfg.to_yaml())
            Run(run_dir, cfg, Store(run_dir)).update_meta(config_hash=cfg.hash(), config_changed_at=datetime.now(
                UTC).isoformat())
            old = cfg
        run = Run(run_dir, old, Store(run_dir))
        if "run_id" not in run.meta:  # a folder made before run ids existed
            run.update_meta(run_id=uuid.uuid4().hex)
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# r3v run config, hash {cfg.hash()}. Rerun: r3v run {path}\n" + cfg.to_yaml())
    Run(run_dir, cfg, Store(run_dir)).update_meta(
        run_id=uuid.uuid4().hex, config_hash=cfg.hash(), created_at=datetime.now(UTC).isoformat())
    return run_dir


def run_meta(run_dir: str | Path) -> dict:
    """run.json of a run folder: run_id (new for every folder created), config_hash, models, plans."""
    p = Path(run_dir) / "run.json"
    if not p.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no run.json)")
    return json.loads(p.read_text())


# -- one writer per run folder ---------------------------------------------------------


class RunLocked(RuntimeError):
    """Another process is running this run folder."""


@contextmanager
def run_lock(run_dir: str | Path, owner: dict | None = None) -> Iterator[dict]:
    """Hold `<run>/.lock` while this process writes the run: a second run on the same folder is
    refused with who holds it. The lock is the kernel's (flock): it goes with the process that
    holds it, so a crashed or killed run never leaves it stuck. (On a network file system flock
    is as good as the file system's locking; an object-store root has no lock.)"""
    path = Path(run_dir) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        os.close(fd)
        who = ", ".join(f"{k} {v}" for k, v in holder.items()) or "another process"
        raise RunLocked(f"{run_dir} is being written by {who}; one run folder has one writer. Wait for it, "
                        f"cancel it, or use another run.name. (The lock goes away with its process.)") from None
    info = {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat(),
            **(owner or {})}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    try:
        yield info
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def clean_partials(run_dir: str | Path) -> int:
    """Remove the hidden temporary folders a killed writer left (`.tmp-*`, `.old-*`); call it
    under the run lock. Returns how many were removed."""
    n = 0
    for p in list(Path(run_dir).rglob(".tmp-*")) + list(Path(run_dir).rglob(".old-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n
