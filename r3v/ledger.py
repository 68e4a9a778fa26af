"""The step ledger of a run folder: what is finished is what the store holds.

Every step records its wall time and facts in `steps/iteration=<k>/step=<name>/`, written after its
outputs (`record`), so a step that finds its record with its outputs and inputs intact (`verify`) is
finished, and a rerun resumes the run. What each step writes and reads is r3v/step_table.py's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from r3v.config import Config
from r3v.run import Run
from r3v.step_table import STEPS, Folder, step_name
from r3v.store import visible_parquet

log = logging.getLogger(__name__)


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
