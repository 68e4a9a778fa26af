"""A run folder: its frozen config, metadata, models by iteration, step bookkeeping, its lock.

Every step records its wall time and facts in `steps/iteration=<k>/step=<name>/`, written after
its outputs, so a step that finds its record is finished and a rerun resumes the run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import yaml

from r3v.config import EXECUTION_KEYS, Config, ConfigError, config_from_dict
from r3v.store import Store

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
        return cls(run_dir, config_from_dict(yaml.safe_load(path.read_text())), Store(run_dir))

    @property
    def meta(self) -> dict:
        return run_meta(self.dir) if (self.dir / "run.json").exists() else {}

    def update_meta(self, **kv) -> None:
        meta = self.meta | kv
        tmp = self.dir / ".run.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(self.dir / "run.json")

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
        from r3v.rollout import make_sampler

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


def init_run(cfg: Config) -> Path:
    """Create the run folder with its frozen config, or check an existing one has the same config."""
    run_dir = cfg.run_dir.resolve()
    path = run_dir / "config.yaml"
    if path.exists():
        old = config_from_dict(yaml.safe_load(path.read_text()))
        if old.hash() != cfg.hash():
            a, b = old.to_dict(), cfg.to_dict()
            diff = [f"{s}.{k}: {a[s][k]!r} -> {b[s][k]!r}" for s in a for k in a[s]
                    if s != "orchestration" and f"{s}.{k}" not in EXECUTION_KEYS
                    if a[s][k] != b[s][k]]
            raise RunConfigMismatch(
                f"{run_dir} holds a run with another config (hash {old.hash()} != {cfg.hash()}; "
                f"changed: {'; '.join(diff)}). Use another run.name, or delete the folder to start over.")
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


# -- step bookkeeping ------------------------------------------------------------------


def done(run: Run, iteration: int, step: str) -> dict | None:
    if not run.store.exists("steps", iteration=iteration, step=step):
        return None
    return json.loads(run.store.read("steps", iteration=iteration, step=step)["info"][0].as_py())


def record(run: Run, iteration: int, step: str, t0: float, info: dict, seconds: float | None = None) -> dict:
    """Write the step's record (its facts and wall time; `seconds` when given, else since `t0`)."""
    info = {**info, "seconds": round(time.perf_counter() - t0 if seconds is None else seconds, 2)}
    run.store.write("steps", pa.Table.from_pylist([{
        "seconds": info["seconds"], "finished_at": datetime.now(UTC), "info": json.dumps(info)}],
        schema=pa.schema([("seconds", pa.float64()), ("finished_at", pa.timestamp("us", tz="UTC")),
                          ("info", pa.string())])), iteration=iteration, step=step)
    log.info("iteration %d %s: %s", iteration, step, info)
    return info


def begin(run_dir: str | Path, iteration: int, step: str) -> tuple[Run, dict | None, float]:
    from r3v.models import set_threads

    run = Run.open(run_dir)
    set_threads(run.cfg.run.torch_threads)
    return run, done(run, iteration, step), time.perf_counter()


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
