"""Generic source files -> raw records: Parquet, JSON Lines and Hugging Face `datasets` folders
(or Parquet with an Image column). The canonical table (r3v/datasets.py) and the benchmarks'
adapters (r3v/benchmarks.py) both read their files through `FILE_READERS`.

A file that cannot be read at all raises `BadFileError` naming it; a record that cannot be parsed
(a JSONL line that is not UTF-8, not JSON or not an object) is yielded as `{"__error__": why}`, so
the validation names its line and, with `data.skip_bad_rows`, keeps every other record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class BadRowError(ValueError):
    """A row of a source cannot be used; the message names the file, row and id."""


class BadFileError(BadRowError):
    """A whole source file cannot be read (truncated, not the format it claims); names the file."""


def _records_parquet(path: Path) -> Iterator[dict]:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            batches = pf.iter_batches(batch_size=256)
            for batch in batches:
                yield from batch.to_pylist()
        except (OSError, pa.ArrowException) as e:  # a truncated file, or a column Arrow cannot read
            raise BadFileError(f"{f}: unreadable Parquet file: {e}") from None


def _records_jsonl(path: Path) -> Iterator[dict]:
    """One record per line of UTF-8 JSON (a byte-order mark at the start is accepted); a line that
    is not UTF-8, not JSON or not an object is a bad record naming its line."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise BadFileError(f"{path}: cannot be read: {e}") from None
    with f:
        for i, raw in enumerate(f):
            if i == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield {"__error__": f"line {i + 1} is not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                    f"save the file as UTF-8"}
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                rec = {"__error__": f"invalid JSON on line {i + 1}: {e}"}
            if not isinstance(rec, dict):
                rec = {"__error__": f"line {i + 1} is not a JSON object"}
            yield rec


def _records_hf(path: Path) -> Iterator[dict]:
    import datasets

    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            raise BadRowError(f"{path}: is a DatasetDict ({list(ds)}); point each split at its own folder")
    else:
        ds = datasets.Dataset.from_parquet(str(path))
    for name, feat in ds.features.items():
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
    yield from ds


FILE_READERS = {"parquet": _records_parquet, "jsonl": _records_jsonl, "hf": _records_hf}
