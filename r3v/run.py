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

from r3v.config import Config, ConfigError, affects_results, config_from_dict, leaves
from r3v.rollout import make_sampler
from r3v.step_table import STEPS, Folder, step_name
from r3v.store import Store, atomic_write_text, visible_parquet

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


# -- step bookkeeping ------------------------------------------------------------------


# The store decides what is done: a step is finished only when its record exists, the outputs it
# names are all there and match what the record saw (Parquet files by row count and content hash,
# model files by size, an adapter by its hash), and the steps it read from still hold the outputs
# it read. Anything else is redone, whatever Prefect's cache holds (a task not finished gets a new
# cache key, tasks/steps.py). A step redone with other outputs fails the check of every step that
# read it, and those are redone in turn.


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _table_outputs(run: Run, table: str, **keys) -> dict | None:
    """{file: [rows, content hash]} of one partition (or every partition under the keys); None
    when there is none or a file is unreadable. (Parquet partitions are hashed whole: a few
    hundred MB a second; model folders are compared by their files' sizes, and an adapter's
    content by the adapter hash in its manifest.)"""
    import pyarrow.parquet as pq

    files = visible_parquet(run.store.partition(table, **keys))
    if not files:
        return None
    out = {}
    for f in files:
        try:
            out[str(f.relative_to(run.dir))] = [pq.read_metadata(f).num_rows, file_hash(f)]
        except (OSError, ValueError):  # truncated or not Parquet (pyarrow's errors are ValueErrors)
            return None
    return out


def _folder_outputs(path: str | Path | None) -> dict | None:
    """{file: bytes} of a model or adapter folder's top-level files (and an adapter's content
    hash from its manifest); None when it is not there."""
    if not path or not Path(path).is_dir():
        return None
    files: dict = {f.name: f.stat().st_size for f in Path(path).iterdir() if f.is_file() and not f.name.startswith(".")}
    manifest = Path(path) / "manifest.json"
    if manifest.is_file():
        try:
            files["adapter_hash"] = json.loads(manifest.read_text()).get("adapter_hash")
        except ValueError:
            return None
    return files or None


def _outputs(run: Run, iteration: int, step: str, info: dict) -> dict | None:
    """What `step` of `iteration` wrote (its `writes` in r3v/step_table.py), as found now; None when
    a part of it is missing. ({} for a name the table does not declare.)"""
    spec = STEPS.get(step)
    if spec is None:
        return {}
    parts: dict[str, dict | None] = {}
    for out in spec.writes:
        if isinstance(out, Folder):
            path = info.get(out.fact) if out.fact else run.dir / out.path.format(iteration=iteration)
            parts[out.key] = _folder_outputs(path)
        elif not (out.unless and info.get(out.unless)):
            keys = {"iteration": iteration} if out.per_iteration else {}
            parts[out.key] = _table_outputs(run, out.name, **keys)
    return None if any(v is None for v in parts.values()) else parts


def upstream(cfg: Config, iteration: int, step: str) -> list[tuple[int, str]]:
    """The steps whose outputs `step` of `iteration` reads (the loop's DAG: `reads` in r3v/step_table.py)."""
    spec = STEPS.get(step)
    return spec.reads(cfg, iteration) if spec else []


_WARNED: set[tuple[str, str]] = set()


def _raw_record(run: Run, iteration: int, step: str) -> str | None:
    """The step's record; in a run folder made by an older version, the record under the step's
    former name (`formerly` in r3v/step_table.py), with a one-line deprecation warning."""
    former = STEPS[step].formerly if step in STEPS else ""
    for name in (step, former) if former else (step,):
        if not run.store.exists("steps", iteration=iteration, step=name):
            continue
        if name != step and (str(run.dir), name) not in _WARNED:
            _WARNED.add((str(run.dir), name))
            log.warning("%s: step %r is recorded under its former name %r (a run folder of an older version); "
                        "read as such", run.dir, step, name)
        try:
            return run.store.read("steps", iteration=iteration, step=name)["info"][0].as_py()
        except (OSError, ValueError, IndexError):
            return None
    return None


def verify(run: Run, iteration: int, step: str) -> tuple[dict | None, str]:
    """(the step's facts, "") when it is finished and its outputs are intact, else (None, why)."""
    raw = _raw_record(run, iteration, step)
    if raw is None:
        return None, "no record"
    info = json.loads(raw)
    checked = info.pop("check", None)
    outputs = _outputs(run, iteration, step, info)
    if outputs is None:
        return None, "its record is there but some of its outputs are missing or unreadable"
    if checked is None:  # a record written before records carried their check: its outputs exist
        return info, ""
    if digest(outputs) != checked.get("outputs"):
        return None, "its outputs differ from the ones it recorded"
    for key, recorded in checked.get("depends", {}).items():
        it, name = key.split("/", 1)
        if _input_digest(run, int(it), step_name(name)) != recorded:
            return None, f"iteration {it} {name}, which it read from, has been redone with other outputs, or is missing"
    return info, ""


def _input_digest(run: Run, iteration: int, step: str) -> str | None:
    """What a downstream step records of an input step: the digest of the input's outputs (so an
    input redone with the same outputs, e.g. sets rebuilt from the same pool, does not redo what
    read it), or of its whole record when the record predates checks."""
    raw = _raw_record(run, iteration, step)
    if raw is None:
        return None
    checked = json.loads(raw).get("check")
    return checked["outputs"] if checked else digest(raw)


def done(run: Run, iteration: int, step: str) -> dict | None:
    """The facts of a finished step (see `verify`), or None: it has to be (re)done."""
    info, why = verify(run, iteration, step)
    if info is None and why != "no record":
        log.warning("iteration %d %s: %s; redoing it", iteration, step, why)
    return info


def shard_done(run: Run, iteration: int, shard: int) -> dict | None:
    """The record of a finished rollout shard, or None: its record is missing, or its rollouts
    are missing, unreadable, of another size or sampled by another model than M_{k-1} now."""
    import pyarrow.parquet as pq

    if not run.store.exists("shards", iteration=iteration, shard=shard):
        return None
    rec = run.store.read("shards", iteration=iteration, shard=shard).to_pylist()[0]
    files = visible_parquet(run.store.partition("rollouts", iteration=iteration, shard=shard))
    why = ""
    try:
        rows = pa.concat_tables([pq.ParquetFile(f).read(columns=["model_ref"]) for f in files]) if files else None
        if rows is None:
            why = "its rollouts are missing"
        elif rows.num_rows != rec["samples"]:
            why = f"its rollouts hold {rows.num_rows} rows, its record {rec['samples']}"
        elif rows.num_rows and set(rows["model_ref"].to_pylist()) != {run.model_ref(iteration - 1)}:
            why = "its rollouts were sampled by another model than the current one"
    except (OSError, ValueError) as e:  # unreadable file, or the model it was sampled with is gone
        why = f"it cannot be checked ({e})"
    if why:
        log.warning("iteration %d rollout shard %d: %s; redoing it", iteration, shard, why)
        return None
    return rec


def record(run: Run, iteration: int, step: str, t0: float, info: dict, seconds: float | None = None) -> dict:
    """Write the step's record (its facts and wall time; `seconds` when given, else since `t0`)
    after its outputs, with what `verify` compares: its outputs' digest and its inputs' outputs' digests."""
    info = {**info, "seconds": round(time.perf_counter() - t0 if seconds is None else seconds, 2)}
    outputs = _outputs(run, iteration, step, info)
    if outputs is None:
        raise RuntimeError(f"iteration {iteration} {step}: finished but its outputs are not all in {run.dir}")
    depends = {}
    for it, name in upstream(run.cfg, iteration, step):
        found = _input_digest(run, it, name)
        if found is not None:
            depends[f"{it}/{name}"] = found
    stored = {**info, "check": {"outputs": digest(outputs), "depends": depends}}
    run.store.write("steps", pa.Table.from_pylist([{
        "seconds": info["seconds"], "finished_at": datetime.now(UTC), "info": json.dumps(stored)}],
        schema=pa.schema([("seconds", pa.float64()), ("finished_at", pa.timestamp("us", tz="UTC")),
                          ("info", pa.string())])), iteration=iteration, step=step)
    log.info("iteration %d %s: %s", iteration, step, info)
    return info


def begin(run_dir: str | Path, iteration: int, step: str) -> tuple[Run, dict | None, float]:
    from r3v.models import set_threads

    run = Run.open(run_dir)
    set_threads(run.cfg.run.torch_threads)
    return run, done(run, iteration, step), time.perf_counter()


_HASHES: dict[tuple, str] = {}


def file_hash(path: Path) -> str:
    """sha256 of a file's content (12 hex digits), streamed; remembered per file identity (inode,
    size, modification time), so checking a step's outputs twice in a process reads them once."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        with path.open("rb") as fh:
            _HASHES[key] = hashlib.file_digest(fh, "sha256").hexdigest()[:12]
    return _HASHES[key]
