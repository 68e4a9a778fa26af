"""Adapters into the canonical question table, and bad rows named by file and row."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from r3v.config import SourceConfig
from r3v.datasets import BadRowError, load_source


def png(colour=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _jsonl(tmp_path, records):
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "a.png").write_bytes(png())
    (tmp_path / "img" / "bad.png").write_bytes(b"not an image")
    f = tmp_path / "data.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return f


GOOD = {"id": "a", "image": "img/a.png", "question": "How many?", "answer": 3}


def test_jsonl_with_image_folder(tmp_path):
    f = _jsonl(tmp_path, [GOOD, dict(GOOD, id="b", choices=["x", "y"], answer="B")])
    table, report = load_source(SourceConfig(path=str(f), format="jsonl"), "train")
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["a", "b"] and report.kept == 2
    assert rows[0]["image"]["bytes"] == png() and rows[0]["answer"] == "3" and rows[0]["split"] == "train"
    assert rows[1]["choices"] == ["x", "y"]


BAD = [
    (dict(GOOD, id="b", image="img/missing.png"), "image file not found"),
    (dict(GOOD, id="b", image="img/bad.png"), "corrupt image"),
    (dict(GOOD, id="b", question="  "), "empty question"),
    ({k: v for k, v in dict(GOOD, id="b").items() if k != "answer"}, "missing answer"),
    (dict(GOOD), "duplicate id"),
]


@pytest.mark.parametrize("bad,reason", BAD, ids=[r for _, r in BAD])
def test_bad_row_is_named_and_skippable(tmp_path, bad, reason):
    f = _jsonl(tmp_path, [GOOD, bad, dict(GOOD, id="c")])
    with pytest.raises(BadRowError) as e:
        load_source(SourceConfig(path=str(f), format="jsonl"), "train")
    assert str(f) in str(e.value) and "row 1" in str(e.value) and reason in str(e.value)
    table, report = load_source(SourceConfig(path=str(f), format="jsonl"), "train", skip_bad_rows=True)
    assert table["id"].to_pylist() == ["a", "c"]  # nothing else is lost
    assert report.total == 3 and report.kept == 2 and len(report.bad) == 1
    assert report.bad[0].row == 1 and reason in report.bad[0].reason


def test_parquet_with_bytes_and_column_mapping(tmp_path):
    f = tmp_path / "q.parquet"
    pq.write_table(pa.table({"qid": ["x", "y"], "img": [png(), png((0, 0, 255))], "q": ["Q1", "Q2"],
                             "label": ["1", "2"]}), f)
    cols = {"id": "qid", "image": "img", "question": "q", "answer": "label"}
    table, _ = load_source(SourceConfig(path=str(f), format="parquet", columns=cols), "test")
    assert table["id"].to_pylist() == ["x", "y"] and table["question"].to_pylist() == ["Q1", "Q2"]


def test_hf_datasets_folder_with_image_column(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"id": ["p", "q"], "image": [Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (9, 9, 9))],
         "question": ["a?", "b?"], "answer": ["1", ""]},
        features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                    "question": datasets.Value("string"), "answer": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(BadRowError, match=r"row 1 \(id='q'\): missing answer"):
        load_source(SourceConfig(path=str(tmp_path / "hf"), format="hf"), "train")
    table, report = load_source(SourceConfig(path=str(tmp_path / "hf"), format="hf"), "train", skip_bad_rows=True)
    assert table["id"].to_pylist() == ["p"] and report.to_dict()["skipped"] == 1
    Image.open(io.BytesIO(table["image"][0].as_py()["bytes"])).verify()


def test_prepare_step_reads_files_and_reports_bad_rows(tmp_path, small_model):
    """A run on user files: bad rows are skipped, counted and listed; every good row is stored."""
    from r3v import steps
    from r3v.config import load_config
    from r3v.run import init_run
    from r3v.store import Store

    f = _jsonl(tmp_path, [GOOD, dict(GOOD, id="b", image="img/bad.png"), dict(GOOD, id="c", rationale="Answer: 3")])
    split = {"path": str(f), "format": "jsonl"}
    cfg = load_config(overrides=[f"run.root={tmp_path / 'runs'}", "run.name=files", "data.source=files",
                                 "data.skip_bad_rows=true", f"model.source={small_model}",
                                 "data.allow_split_overlap=true"]  # one file for every split
                      + [f"data.{s}_split.{k}={v}" for s in ("seed", "train", "test") for k, v in split.items()])
    run_dir = init_run(cfg)
    facts = steps.prepare(str(run_dir))
    assert facts["questions"] == {"seed": 2, "train": 2, "test": 2}
    assert facts["skipped_bad_rows"] == {"seed": 1, "train": 1, "test": 1}
    report = json.loads((run_dir / "questions" / "bad_rows.json").read_text())
    assert report["train"]["bad_rows"][0]["id"] == "b" and "corrupt image" in report["train"]["bad_rows"][0]["reason"]
    assert Store(run_dir).query("SELECT count(*) AS n FROM questions")["n"][0].as_py() == 6
    assert steps.prepare(str(run_dir)) == facts  # finished: returns its record, does nothing
