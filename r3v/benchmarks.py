"""The papers' benchmarks, read in the formats their authors publish, into canonical questions.

Each adapter reads one split as downloaded and yields raw records in the canonical columns
(`r3v.datasets.CANONICAL`): the question as the benchmark's own evaluation code poses it, the gold
answer, options for multiple choice, a gold rationale where the data has one (ending in
`Answer: X`, so the split can be a seed split), and metadata that carries the benchmark's scorer
(`r3v.judge.judge_for_question` applies it) and its fields for per-type accuracy in SQL.
`r3v.datasets.canonical_rows` validates every record; a record an adapter cannot read becomes an
`__error__` record, so the error names the file and record and, with `skip_bad_rows`, every other
record is kept.

| format       | path                                   | images                             | scorer                       |
|--------------|----------------------------------------|------------------------------------|------------------------------|
| `tabmwp`     | `problems_{train,dev,test}.json`       | `tables/{pid}.png` by the file     | TabMWP's (`judge_tabmwp`)    |
| `chartqa`    | `{split}/{split}_human.json` (or `_augmented`), or the split folder (both) | `{split}/png/{imgname}` | relaxed accuracy, 5%     |
| `clevr_math` | `clevr_{train,test}.json`              | `filename`, under `image_dir`      | exact integer                |
| `geoqa`      | GeoQA's `.pk` (numpy images), or JSON / JSONL / a folder of per-problem JSON | in the record, or `{id}.png` | letter choice |
| `m3cot`      | `{train,dev,test}.jsonl`, or its Hugging Face folder / Parquet | `image` (path or Image column) | letter choice |
"""

from __future__ import annotations

import io
import json
import operator
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from r3v.files import FILE_READERS
from r3v.judge import LETTERS, extract_answer

FORMATS = ("tabmwp", "chartqa", "clevr_math", "geoqa", "m3cot")


def _error(rid: Any, message: str) -> dict:
    return {"id": None if rid is None else str(rid), "__error__": message}


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _with_answer_line(rationale: str | None, answer: str) -> str | None:
    """A gold rationale that ends in `Answer: X` (appended when the data's text has none)."""
    if not isinstance(rationale, str) or not rationale.strip():
        return None
    text = rationale.strip()
    return text if extract_answer(text, explicit=True) is not None else f"{text}\nAnswer: {answer}"


def _letter(label: Any, n_choices: int) -> str:
    """A choice label given as a letter (`B`, `(B)`) or a 0-based index (int, numpy int or digits),
    as its letter."""
    text = label.strip().strip("()").strip().upper() if isinstance(label, str) else None
    if text is not None and len(text) == 1 and text in LETTERS:
        i = LETTERS.index(text)
    elif text is not None and text.isdigit():
        i = int(text)
    elif text is None and not isinstance(label, bool | float):
        try:
            i = operator.index(label)
        except TypeError:
            raise ValueError(f"answer label {label!r} is neither a letter nor an index") from None
    else:
        raise ValueError(f"answer label {label!r} is neither a letter nor an index")
    if not 0 <= i < n_choices:
        raise ValueError(f"answer label {label!r} is out of range for {n_choices} choices")
    return LETTERS[i]


# -- TabMWP (Lu et al., ICLR 2023) -------------------------------------------------------------


def read_tabmwp(path: Path) -> Iterator[dict]:
    """`problems_{split}.json`: {pid: {question, choices, unit, answer, ques_type, ans_type, grade,
    solution, ...}}; the table image is `tables/{pid}.png` beside the file (or under image_dir).
    The question is posed as TabMWP's evaluation does: the unit appended as `(Unit: u)`, options
    rendered by the prompt as `(A) ... (B) ...`."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected TabMWP's {{pid: problem}} mapping, got a {type(data).__name__}")
    for pid, p in data.items():
        if not isinstance(p, dict):
            yield _error(pid, f"problem {pid} is not an object")
            continue
        question, unit, choices = p.get("question"), p.get("unit") or None, p.get("choices") or None
        if isinstance(question, str) and unit:
            question = f"{question} (Unit: {unit})"
        answer = p.get("answer")
        answer = None if answer is None else str(answer)
        meta = {"scorer": "tabmwp", "benchmark": "tabmwp", "unit": unit, "ques_type": p.get("ques_type"),
                "ans_type": p.get("ans_type"), "grade": p.get("grade")}
        yield {"id": str(pid), "image": f"tables/{pid}.png", "question": question, "answer": answer,
               "choices": choices, "rationale": _with_answer_line(p.get("solution"), answer or ""),
               "metadata": meta}


# -- ChartQA (Masry et al., ACL Findings 2022) -------------------------------------------------


def chartqa_files(path: Path) -> list[Path]:
    """A split file, or a split folder's `{split}_human.json` and `{split}_augmented.json`."""
    if path.is_file():
        return [path]
    files = [path / f"{path.name}_{part}.json" for part in ("human", "augmented")]
    found = [f for f in files if f.is_file()]
    if not found:
        raise FileNotFoundError(f"{path}: no {files[0].name} or {files[1].name} (ChartQA split folder)")
    return found


def _numbered(path: Path, expected: str, record: Callable[[str, dict], dict]) -> Iterator[dict]:
    """The records of a JSON list file, each made by `record(id, raw)`; ids are `{file stem}-{index}`
    (these benchmarks have none)."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected {expected}")
    for i, rec in enumerate(data):
        rid = f"{path.stem}-{i:06d}"
        yield record(rid, rec) if isinstance(rec, dict) else _error(rid, "record is not an object")


def read_chartqa(path: Path) -> Iterator[dict]:
    """`{split}_{human,augmented}.json`: [{imgname, query, label}], charts under the split's `png/`;
    the scorer is relaxed accuracy."""
    for f in chartqa_files(path):
        subset = f.stem.split("_")[-1]

        def record(rid: str, rec: dict, subset: str = subset) -> dict:
            imgname, label = rec.get("imgname"), rec.get("label")
            return {"id": rid, "image": f"png/{imgname}" if imgname else None, "question": rec.get("query"),
                    "answer": None if label is None else str(label), "choices": None, "rationale": None,
                    "metadata": {"scorer": "relaxed", "benchmark": "chartqa", "subset": subset, "imgname": imgname}}

        yield from _numbered(f, "ChartQA's list of {imgname, query, label}", record)


# -- CLEVR-Math (Lindström & Abraham, 2022) ----------------------------------------------------


def read_clevr_math(path: Path) -> Iterator[dict]:
    """`clevr_{split}.json`: [{filename, question, answer}]; integer answers, judged exactly."""

    def record(rid: str, rec: dict) -> dict:
        answer = rec.get("answer")
        if answer is not None and not _is_integer(answer):
            return _error(rid, f"answer {answer!r} is not an integer (CLEVR-Math answers are counts)")
        return {"id": rid, "image": rec.get("filename"), "question": rec.get("question"),
                "answer": None if answer is None else str(int(float(answer))), "choices": None, "rationale": None,
                "metadata": {"answer_type": "integer", "benchmark": "clevr_math", "filename": rec.get("filename"),
                             **({"template": rec["template"]} if "template" in rec else {})}}

    yield from _numbered(path, "CLEVR-Math's list of {filename, question, answer}", record)


def _is_integer(value: Any) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False


# -- GeoQA (Chen et al., ACL Findings 2021), GeoQA+ and UniGeo's calculation split -------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """GeoQA ships pickles of dicts holding numpy image arrays. Unpickling can run arbitrary code,
    so only the globals numpy arrays need are allowed; anything else is refused by name."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only numpy arrays are allowed)")
        return super().find_class(module, name)


def _png(array: Any) -> bytes:
    """A numpy image (grey or RGB, any numeric range) as PNG bytes, scaled to 0..255 if needed."""
    import numpy as np
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    Image.fromarray(a).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _geoqa_records(path: Path) -> Iterator[tuple[Any, Any]]:
    """(record id hint, raw record) from a .pk, .json (list or {id: record}), .jsonl, or a folder of
    per-problem `{id}.json` files."""
    if path.is_dir():
        for f in sorted(path.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            try:
                yield f.stem, _load_json(f)
            except ValueError as e:
                yield f.stem, e
        return
    if path.suffix in (".pk", ".pkl", ".pickle"):
        with path.open("rb") as fh:
            try:
                data = _NumpyOnlyUnpickler(fh).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
                raise ValueError(f"{path}: cannot read GeoQA pickle: {e}") from None
    elif path.suffix == ".jsonl":
        data = []
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as e:
                    data.append(ValueError(f"invalid JSON on line {i + 1}: {e}"))
    else:
        data = _load_json(path)
    if isinstance(data, dict):
        yield from data.items()
    elif isinstance(data, list):
        yield from enumerate(data)
    else:
        raise ValueError(f"{path}: expected a list of GeoQA problems, got a {type(data).__name__}")


def read_geoqa(path: Path) -> Iterator[dict]:
    """GeoQA problems: {id, English_problem (GeoQA+, UniGeo) or subject (GeoQA), choices, label
    (0-based index or letter), image (a numpy array in the pickles; else `{id}.png` under
    image_dir)}. Multiple choice, judged by letter or option text."""
    for hint, rec in _geoqa_records(path):
        if isinstance(rec, Exception):
            yield _error(hint, str(rec))
            continue
        if not isinstance(rec, dict):
            yield _error(hint, "record is not an object")
            continue
        rid = str(rec.get("id", hint))
        question = rec.get("English_problem") or rec.get("question") or rec.get("subject") or rec.get("problem")
        choices = rec.get("choices")
        if not isinstance(choices, list | tuple) or len(choices) < 2:
            yield _error(rid, f"choices must be a list of at least two options, got {choices!r}")
            continue
        choices = [str(c) for c in choices]
        try:
            answer = _letter(rec["label"] if "label" in rec else rec.get("answer"), len(choices))
        except ValueError as e:
            yield _error(rid, str(e))
            continue
        image = rec.get("image")
        if image is not None and not isinstance(image, str | bytes | dict):
            try:
                image = _png(image)
            except (TypeError, ValueError) as e:
                yield _error(rid, f"image array cannot be read: {e}")
                continue
        elif image is None:
            image = f"{rid}.png"  # GeoQA's json/ + image/ release: image_base points at image/
        meta = {"benchmark": "geoqa", **{k: rec[k] for k in ("subject", "formal_point", "manual_program", "numbers")
                                         if k in rec and _jsonable(rec[k])}}
        yield {"id": rid, "image": image, "question": question, "answer": answer, "choices": choices,
               "rationale": None, "metadata": meta}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


# -- M3CoT (Chen et al., ACL 2024) --------------------------------------------------------------


def read_m3cot(path: Path) -> Iterator[dict]:
    """`{split}.jsonl` rows {id, question, choices, answer (letter), context, rationale, image (path),
    domain, topic, category}, or the Hugging Face release (a `save_to_disk` folder or Parquet with
    an Image column). The context, when set, precedes the question; the gold rationale (ending in
    `Answer: X`) makes a seed split."""
    records = FILE_READERS["jsonl" if path.suffix == ".jsonl" else ("hf" if path.is_dir() else "parquet")](path)
    for rec in records:
        rid = rec.get("id")
        if "__error__" in rec:
            yield _error(rid, rec["__error__"])
            continue
        choices = rec.get("choices")
        if not isinstance(choices, list) or len(choices) < 2:
            yield _error(rid, f"choices must be a list of at least two options, got {choices!r}")
            continue
        try:
            answer = _letter(rec.get("answer"), len(choices))
        except ValueError as e:
            yield _error(rid, str(e))
            continue
        question, context = rec.get("question"), (rec.get("context") or "").strip()
        if isinstance(question, str) and context:
            question = f"{context}\n{question}"
        image = rec.get("image") if rec.get("image") is not None else rec.get("image_path")
        yield {"id": rid, "image": image, "question": question, "answer": answer, "choices": [str(c) for c in choices],
               "rationale": _with_answer_line(rec.get("rationale"), answer),
               "metadata": {"benchmark": "m3cot", **{k: rec.get(k) for k in ("domain", "topic", "category", "image_id")
                                                      if rec.get(k) is not None}}}


BENCHMARK_READERS = {"tabmwp": read_tabmwp, "chartqa": read_chartqa, "clevr_math": read_clevr_math, "geoqa": read_geoqa,
           "m3cot": read_m3cot}


def detect_format(path: Path) -> str | None:
    """A format guessed from the benchmark's file names (None: give `--format`)."""
    name = path.name
    if name.startswith("problems_") and name.endswith(".json"):
        return "tabmwp"
    if name.endswith(("_human.json", "_augmented.json")) or (path.is_dir() and any(
            (path / f"{name}_{p}.json").is_file() for p in ("human", "augmented"))):
        return "chartqa"
    if name.startswith("clevr_") and name.endswith(".json"):
        return "clevr_math"
    if path.suffix in (".pk", ".pkl"):
        return "geoqa"
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()):
        return "hf"
    return None


def image_base(fmt: str, path: Path) -> Path:
    """Where an adapter's relative image paths start when no image_dir is given: the file's folder
    (a ChartQA split folder itself; for GeoQA's folder of JSON files, its sibling `image/`)."""
    if not path.is_dir():
        return path.parent
    if fmt == "geoqa" and (path.parent / "image").is_dir():
        return path.parent / "image"
    return path
