"""Data in: adapters from user files into one canonical question table.

Canonical row: id, image {bytes, path}, question, answer, choices (list or null), rationale
(gold, seed split only), metadata (JSON string), split. Images are stored as bytes so a run folder
is self-contained.

Sources: Parquet (image as bytes, {bytes, path} struct or a path), JSONL + image folder, a
Hugging Face `datasets` folder (`save_to_disk`) or Parquet with an Image column, and the papers'
benchmarks in their published formats (r3v/benchmarks.py: TabMWP, ChartQA, CLEVR-Math, GeoQA, M3CoT). Every row is
validated: a missing or corrupt image, an empty question, a missing answer or a duplicate id raises
`BadRowError` naming the file, row and id; with `skip_bad_rows` such rows are counted and reported
in a `BadRowReport`, and every other row is kept.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from r3v import benchmarks
from r3v.config import DataConfig, SourceConfig
from r3v.embedded.bench import suite
from r3v.files import FILE_READERS, BadFileError, BadRowError  # noqa: F401 (BadFileError: part of this module's API)
from r3v.judge import to_number
from r3v.schema import QUESTION_SCHEMA

CANONICAL = ("id", "image", "question", "answer", "choices", "rationale", "metadata")


@dataclass
class BadRow:
    file: str
    row: int
    id: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row} (id={self.id!r}): {self.reason}"


@dataclass
class BadRowReport:
    total: int = 0
    kept: int = 0
    bad: list[BadRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "kept": self.kept, "skipped": len(self.bad),
                "bad_rows": [vars(b) for b in self.bad]}


# -- reading raw records ---------------------------------------------------------------




# -- validation ------------------------------------------------------------------------


def _inside(path: Path, base: Path) -> Path:
    """`path` (relative to `base`, or absolute) resolved, symlinks followed; ValueError when it
    resolves outside `base` (`../../x.png`, an absolute path elsewhere, a link pointing out)."""
    resolved = (base / path).resolve()
    root = base.resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(f"image path {str(path)!r} resolves outside the image folder {root} (to {resolved}); "
                         f"put the images under it or set image_dir")
    return resolved


def _check_pixels(data: bytes, path: str | None, max_pixels: int) -> None:
    import warnings

    from PIL import Image, UnidentifiedImageError

    where = f" {path}" if path else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ValueError(f"image{where} is {w}x{h} = {w * h} pixels, over data.max_image_pixels={max_pixels}")
                im.verify()
    except Image.DecompressionBombError as e:
        raise ValueError(f"image{where} is over data.max_image_pixels={max_pixels}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"corrupt image{where}: {e}") from None


def _image_bytes(value: Any, base: Path, max_pixels: int = 89_478_485) -> tuple[bytes, str | None]:
    """Bytes of an image given as bytes, {bytes, path} or a path under `base`; raises ValueError
    with a reason (missing, outside `base`, over `max_pixels`, corrupt)."""
    path = None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str):
        data, path = None, value
    elif value is None:
        raise ValueError("missing image")
    else:
        raise ValueError(f"image of unsupported type {type(value).__name__}")
    if not data:
        if not path:
            raise ValueError("missing image")
        p = _inside(Path(path), base)
        if not p.is_file():
            raise ValueError(f"image file not found: {base / path}")
        data = p.read_bytes()
    _check_pixels(data, path, max_pixels)
    return data, path


def _scalar_text(value: Any, what: str) -> str:
    """A scalar answer as text; lists, mappings, booleans, NaN and infinities are refused."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is a boolean ({value}); give it as text (e.g. \"yes\")")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} is {value} (not a number a judge can compare)")
    if not isinstance(value, str | int | float):
        raise ValueError(f"{what} is a {type(value).__name__}, not a single value")
    return str(value)


def canonical_rows(records: Iterable[dict], file: str, split: str, base: Path, columns: dict[str, str],
                   skip_bad_rows: bool, report: BadRowReport, seen: set[str] | None = None,
                   max_pixels: int = 89_478_485) -> list[dict]:
    """Validate and map raw records to canonical rows; bad rows raise or are reported."""
    seen = set() if seen is None else seen
    out = []
    col = {k: columns.get(k, k) for k in CANONICAL}
    for i, rec in enumerate(records):
        report.total += 1
        rid = rec.get(col["id"])
        rid = None if rid is None or isinstance(rid, list | dict | bool) else str(rid)
        try:
            if "__error__" in rec:
                raise ValueError(rec["__error__"])
            if not rid:
                raise ValueError(f"missing id (column {col['id']!r})" if rec.get(col["id"]) is None
                                 else f"id is a {type(rec.get(col['id'])).__name__}, not a single value")
            if rid in seen:
                raise ValueError("duplicate id")
            question = rec.get(col["question"])
            if question is not None and not isinstance(question, str):
                raise ValueError(f"question is a {type(question).__name__}, not text (column {col['question']!r})")
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"empty question (column {col['question']!r})")
            answer = rec.get(col["answer"])
            if answer is None or (isinstance(answer, str) and not answer.strip()):
                raise ValueError(f"missing answer (column {col['answer']!r})")
            answer = _scalar_text(answer, f"answer (column {col['answer']!r})").strip()
            data, path = _image_bytes(rec.get(col["image"]), base, max_pixels)
            choices = rec.get(col["choices"])
            if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
                raise ValueError("choices must be a list of strings")
            rationale = rec.get(col["rationale"])
            if rationale is not None and not isinstance(rationale, str):
                raise ValueError(f"rationale is a {type(rationale).__name__}, not text (column {col['rationale']!r})")
            meta = rec.get(col["metadata"])
            if meta is not None and not isinstance(meta, str | dict):
                raise ValueError(f"metadata is a {type(meta).__name__}, not a JSON object or text")
            meta = meta if isinstance(meta, str) or meta is None else json.dumps(meta, default=str)
        except ValueError as e:
            bad = BadRow(file, i, rid, str(e))
            if not skip_bad_rows:
                raise BadRowError(str(bad)) from None
            report.bad.append(bad)
            continue
        seen.add(rid)
        out.append({"id": rid, "image": {"bytes": data, "path": path}, "question": question,
                    "answer": answer, "choices": choices or None,
                    "rationale": rationale, "metadata": meta or "{}", "split": split})
        report.kept += 1
    return out


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=QUESTION_SCHEMA)


def load_source(src: SourceConfig, split: str, skip_bad_rows: bool = False,
                max_pixels: int = 89_478_485) -> tuple[pa.Table, BadRowReport]:
    """Read one split from files into the canonical table."""
    path = Path(src.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data.{split}_split.path: {path} does not exist")
    return read_source(path, src.format, split, Path(src.image_dir).expanduser() if src.image_dir else None,
                       src.columns, skip_bad_rows, max_pixels)


def read_source(path: Path, fmt: str, split: str, image_dir: Path | None = None, columns: dict[str, str] | None = None,
                skip_bad_rows: bool = False, max_pixels: int = 89_478_485) -> tuple[pa.Table, BadRowReport]:
    """Read one file (or folder) of format `fmt` into the canonical table, validating every row."""
    if fmt in benchmarks.BENCHMARK_READERS:
        if columns:
            raise ValueError(f"{path}: `columns` maps generic files; the {fmt} adapter reads {fmt}'s own fields")
        records, default_base = benchmarks.BENCHMARK_READERS[fmt](path), benchmarks.image_base(fmt, path)
    elif fmt in FILE_READERS:
        records, default_base = FILE_READERS[fmt](path), (path if path.is_dir() else path.parent)
    else:
        raise ValueError(f"{path}: unknown format {fmt!r} (one of {sorted(FILE_READERS) + list(benchmarks.FORMATS)})")
    report = BadRowReport()
    rows = canonical_rows(records, str(path), split, image_dir or default_base, columns or {}, skip_bad_rows, report,
                          max_pixels=max_pixels)
    return to_table(rows), report


def load_splits(cfg: DataConfig) -> dict[str, tuple[pa.Table, BadRowReport]]:
    """seed/train/test tables for a run, from the embedded generator or from files."""
    if cfg.source == "embedded":
        out = {}
        for split, n in (("seed", cfg.embedded.n_seed), ("train", cfg.embedded.n_train),
                         ("test", cfg.embedded.n_test)):
            rows = [dict(r, split=split) for r in suite.generate(split, n, cfg.embedded)]
            out[split] = (to_table(rows), BadRowReport(total=len(rows), kept=len(rows)))
        return out
    out = {}
    for split, src in (("seed", cfg.seed_split), ("train", cfg.train_split), ("test", cfg.test_split)):
        if not src.path:
            if split == "seed":
                continue  # a run may start from a model that already reasons
            raise ValueError(f"data.{split}_split.path is required when data.source=files")
        out[split] = load_source(src, split, cfg.skip_bad_rows, cfg.max_image_pixels)
    return out if cfg.allow_split_overlap else _without_overlap(out, cfg)


def _without_overlap(splits: dict[str, tuple[pa.Table, BadRowReport]], cfg: DataConfig) -> dict:
    """An id in two splits is leakage: a bad row of the split that is not kept whole (test over
    seed over train), raised, or with skip_bad_rows reported and dropped there."""
    owner: dict[str, str] = {}
    out = {}
    for split in ("test", "seed", "train"):
        if split not in splits:
            continue
        table, report = splits[split]
        src = getattr(cfg, f"{split}_split")
        ids = table.column("id").to_pylist()
        keep = []
        for i, rid in enumerate(ids):
            if rid in owner:
                bad = BadRow(src.path, i, rid, f"id also in the {owner[rid]} split ({getattr(cfg, owner[rid] + '_split').path}): "
                                               f"the same question in two splits is leakage "
                                               f"(data.allow_split_overlap: true accepts it)")
                if not cfg.skip_bad_rows:
                    raise BadRowError(str(bad))
                report.bad.append(bad)
                report.kept -= 1
            else:
                keep.append(i)
        owner.update({rid: split for rid in ids if rid not in owner})
        out[split] = (table.take(pa.array(keep, pa.int64())) if len(keep) != len(ids) else table, report)
    return {s: out[s] for s in splits}


# -- inspecting a source -----------------------------------------------------------------


def inspect_source(path: str | Path, fmt: str | None = None, image_dir: str | Path | None = None,
                   columns: dict[str, str] | None = None, rows: int = 3,
                   against: str | Path | None = None) -> tuple[str, BadRowReport]:
    """What `r3v data inspect` prints: counts, the answers' shape, metadata fields, a few rows and
    every bad row with its reason (nothing is written); with `against` (another split's file, same
    format and columns), the ids both hold: leakage a run refuses unless data.allow_split_overlap."""
    import collections

    from PIL import Image

    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    fmt = fmt or benchmarks.detect_format(p)
    if fmt is None:
        raise ValueError(f"{p}: cannot tell the format from the name; give --format "
                         f"({', '.join(sorted(FILE_READERS) + list(benchmarks.FORMATS))})")
    table, report = read_source(p, fmt, "inspect", Path(image_dir).expanduser() if image_dir else None, columns,
                                skip_bad_rows=True)
    qs = table.to_pylist()
    metas = [json.loads(q["metadata"] or "{}") for q in qs]
    out = [f"{p} ({fmt}): {report.total} records, {report.kept} readable, {len(report.bad)} bad"]
    if qs:
        mc = sum(1 for q in qs if q["choices"])

        numeric = sum(1 for q in qs if not q["choices"] and to_number(q["answer"]) is not None)
        out.append(f"answers: {mc} multiple choice, {numeric} numeric, {len(qs) - mc - numeric} text; "
                   f"{sum(1 for q in qs if q['rationale'])} with a gold rationale (usable as a seed split)")
        scorers = collections.Counter(m.get("scorer") or ("integer" if m.get("answer_type") == "integer" else "default")
                                      for m in metas)
        out.append("scoring: " + ", ".join(f"{k} {v}" for k, v in scorers.most_common()))
        images = collections.Counter(q["image"]["bytes"] for q in qs)
        out.append(f"images: {len(images)} distinct ({len(qs) / len(images):.2f} questions per image)")
        for key in sorted({k for m in metas for k in m} - {"scorer", "answer_type"}):
            values = collections.Counter(str(m.get(key)) for m in metas if key in m)
            if len(values) <= 12:
                out.append(f"metadata.{key}: " + ", ".join(f"{v} {n}" for v, n in values.most_common()))
            else:
                out.append(f"metadata.{key}: {len(values)} distinct values")
        out.append("")
        for q in qs[:rows]:
            with Image.open(io.BytesIO(q["image"]["bytes"])) as im:
                size = f"{im.width}x{im.height}"
            opts = f" | choices {q['choices']}" if q["choices"] else ""
            out.append(f"[{q['id']}] image {size} | {q['question']!r}{opts} | answer {q['answer']!r}")
            if q["rationale"]:
                out.append(f"    rationale: {q['rationale'][:160]!r}")
    if against is not None:
        other = Path(against).expanduser()
        theirs = set(read_source(other, benchmarks.detect_format(other) or fmt, "against", None, columns,
                                 skip_bad_rows=True)[0].column("id").to_pylist())
        shared = [i for i, q in enumerate(qs) if q["id"] in theirs]
        out.append(f"ids also in {other}: {len(shared)}" + (" (leakage: a run refuses them unless "
                                                             "data.allow_split_overlap: true)" if shared else ""))
        report.bad += [BadRow(str(p), i, qs[i]["id"], f"id also in {other} (leakage)") for i in shared]
        report.kept -= len(shared)
    if report.bad:
        reasons = collections.Counter(b.reason.split(":")[0] for b in report.bad)
        out.append("")
        out.append("bad records by reason: " + "; ".join(f"{r} ({n})" for r, n in reasons.most_common()))
        out += [f"  {b}" for b in report.bad[:20]]
        if len(report.bad) > 20:
            out.append(f"  ... and {len(report.bad) - 20} more")
    return "\n".join(out), report
