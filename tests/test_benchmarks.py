"""The papers' benchmarks in their published formats: small fixtures written here in those exact
formats, read by the adapters, judged by each benchmark's scoring; errors name file and record."""

import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from r3v.cli import main
from r3v.config import SourceConfig
from r3v.datasets import BadRowError, load_source, read_source
from r3v.judge import judge_for_question, tabmwp_normalize


def _png(path, color=(200, 30, 30), size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _q(table, qid):
    return next(q for q in table.to_pylist() if q["id"] == qid)


def _right(text, q):
    return judge_for_question(text, q)[1].correct


# -- TabMWP -------------------------------------------------------------------------------------


def _tabmwp(root, missing_image=False):
    problems = {
        "1": {"question": "How much money does Ann need to buy a pen and a book?", "choices": None, "unit": "dollars",
              "answer": "1,000", "ques_type": "free_text", "ans_type": "integer_number", "grade": 4,
              "table": "pen | $2\nbook | $998", "solution": "Add: $2 + $998 = $1,000. Ann needs $1,000."},
        "2": {"question": "Is the number of pens even or odd?", "choices": ["even", "odd"], "unit": None,
              "answer": "odd", "ques_type": "multi_choice", "ans_type": "boolean_text", "grade": 2,
              "solution": "7 is odd. So the answer is odd."},
        "3": {"question": "What fraction of the stickers are red?", "choices": None, "unit": "",
              "answer": "3/4", "ques_type": "free_text", "ans_type": "decimal_number", "grade": 6,
              "solution": "3 of 4 are red."},
    }
    (root / "problems_test.json").write_text(json.dumps(problems))
    for pid in problems:
        if not (missing_image and pid == "3"):
            _png(root / "tables" / f"{pid}.png")
    return root / "problems_test.json"


def test_tabmwp_reads_the_published_format_and_scores_like_its_evaluator(tmp_path):
    table, report = load_source(SourceConfig(path=str(_tabmwp(tmp_path)), format="tabmwp"), "test")
    assert report.kept == 3
    q1, q2, q3 = (_q(table, p) for p in "123")
    assert q1["question"].endswith("(Unit: dollars)") and q1["choices"] is None
    assert q2["choices"] == ["even", "odd"] and q2["answer"] == "odd"
    assert q1["rationale"].endswith("Answer: 1,000")  # the solution, ending in the answer line
    assert q2["rationale"] == "7 is odd. So the answer is odd."  # already states its answer
    assert json.loads(q1["metadata"])["ques_type"] == "free_text"
    # TabMWP's normalisation: $, thousands separators, fractions, trailing punctuation, the unit
    assert _right("so she needs... Answer: $1000.", q1) and _right("Answer: 1000 dollars", q1)
    assert not _right("Answer: 1001", q1) and not _right("no final answer", q1)
    assert _right("Answer: 0.75", q3) and _right("Answer: 3/4", q3) and not _right("Answer: 0.7", q3)
    # no relative tolerance: TabMWP is exact after normalisation
    assert not _right("Answer: 999", q1)
    # multiple choice: letter or option text; a letter out of range is wrong, never a random pick
    assert _right("Answer: (B)", q2) and _right("Answer: odd", q2) and _right("Answer: ODD", q2)
    assert not _right("Answer: A", q2)
    assert judge_for_question("Answer: C", q2)[1].reason == "bad_choice"
    assert tabmwp_normalize("-3/2", None) == "-1.5" and tabmwp_normalize("5.50 dollars", "dollars") == "5.5"


def test_tabmwp_missing_table_names_the_file_and_problem(tmp_path):
    path = _tabmwp(tmp_path, missing_image=True)
    with pytest.raises(BadRowError, match=r"problems_test.json: row 2 \(id='3'\): image file not found: .*tables/3.png"):
        load_source(SourceConfig(path=str(path), format="tabmwp"), "test")
    table, report = load_source(SourceConfig(path=str(path), format="tabmwp"), "test", skip_bad_rows=True)
    assert [q["id"] for q in table.to_pylist()] == ["1", "2"] and report.bad[0].id == "3"


# -- ChartQA ------------------------------------------------------------------------------------


def _chartqa(root):
    split = root / "ChartQA Dataset" / "test"
    (split / "png").mkdir(parents=True)
    human = [{"imgname": "a.png", "query": "What is the highest value?", "label": "10"},
             {"imgname": "b.png", "query": "What share voted yes?", "label": "45"},
             {"imgname": "a.png", "query": "Is the red bar the tallest?", "label": "Yes"}]
    augmented = [{"imgname": "b.png", "query": "How many people in total?", "label": "1234"},
                 {"imgname": "missing.png", "query": "What is the lowest value?", "label": "0"}]
    (split / "test_human.json").write_text(json.dumps(human))
    (split / "test_augmented.json").write_text(json.dumps(augmented))
    _png(split / "png" / "a.png")
    _png(split / "png" / "b.png", (20, 20, 200))
    return split


def test_chartqa_split_folder_reads_human_and_augmented_with_relaxed_accuracy(tmp_path):
    split = _chartqa(tmp_path)
    with pytest.raises(BadRowError, match=r"id='test_augmented-000001'.*png/missing.png"):
        load_source(SourceConfig(path=str(split), format="chartqa"), "test")
    table, report = load_source(SourceConfig(path=str(split), format="chartqa"), "test", skip_bad_rows=True)
    assert report.kept == 4 and len(report.bad) == 1
    top, share, yes, total = (_q(table, i) for i in ("test_human-000000", "test_human-000001", "test_human-000002",
                                                    "test_augmented-000000"))
    assert json.loads(total["metadata"])["subset"] == "augmented"
    assert _right("Answer: 10.4", top) and _right("Answer: 9.6", top)  # within 5%
    assert not _right("Answer: 10.6", top) and not _right("Answer: 11", top)
    # relaxed accuracy is ChartQA's 5% whatever the run's judge.tolerance
    assert judge_for_question("Answer: 10.4", top, tolerance=0.0)[1].correct
    assert _right("Answer: 45%", share) and _right("Answer: 1,234", total) and _right("Answer: yes", yes)
    assert not _right("Answer: no", yes)
    # one file of the split
    one, _ = load_source(SourceConfig(path=str(split / "test_human.json"), format="chartqa"), "test")
    assert one.num_rows == 3


# -- CLEVR-Math ---------------------------------------------------------------------------------


def test_clevr_math_integer_answers_judged_exactly(tmp_path):
    recs = [{"filename": "CLEVR_test_000000.png", "question": "Subtract all red cubes. How many objects are left?",
             "answer": 3, "template": "subtraction"},
            {"filename": "CLEVR_test_000000.png", "question": "Add 2 spheres. How many spheres are there?",
             "answer": "5"},
            {"filename": "CLEVR_test_000001.png", "question": "How many?", "answer": "2.5"}]
    (tmp_path / "clevr_test.json").write_text(json.dumps(recs))
    _png(tmp_path / "images" / "CLEVR_test_000000.png")
    _png(tmp_path / "images" / "CLEVR_test_000001.png")
    src = SourceConfig(path=str(tmp_path / "clevr_test.json"), format="clevr_math", image_dir=str(tmp_path / "images"))
    with pytest.raises(BadRowError, match=r"clevr_test.json: row 2 \(id='clevr_test-000002'\): answer '2.5' is not an integer"):
        load_source(src, "test")
    table, _ = load_source(src, "test", skip_bad_rows=True)
    q = _q(table, "clevr_test-000000")
    assert q["answer"] == "3" and json.loads(q["metadata"])["template"] == "subtraction"
    assert _right("Answer: 3", q) and _right("Answer: 3.0", q)
    assert not _right("Answer: 3.1", q) and not _right("Answer: 4", q)  # no 5% slack on counts


# -- GeoQA --------------------------------------------------------------------------------------


def _geoqa_problem(i, label):
    return {"id": i, "subject": "angle", "English_problem": f"In the figure, AB ∥ CD, angle 1 = {40 + i}°; find angle 2.",
            "choices": ["40°", "50°", "130°", "140°"], "label": label, "numbers": [40 + i],
            "image": np.linspace(0, 1, 30 * 40).reshape(30, 40) if i % 2 else (np.arange(30 * 40 * 3) % 256).astype(
                np.uint8).reshape(30, 40, 3)}


def test_geoqa_pickle_with_numpy_images_and_letter_scoring(tmp_path):
    path = tmp_path / "test.pk"
    path.write_bytes(pickle.dumps([_geoqa_problem(0, 2), _geoqa_problem(1, 1), _geoqa_problem(2, 7)]))
    table, report = load_source(SourceConfig(path=str(path), format="geoqa"), "test", skip_bad_rows=True)
    assert report.kept == 2 and "out of range for 4 choices" in report.bad[0].reason and report.bad[0].id == "2"
    q0, q1 = _q(table, "0"), _q(table, "1")
    assert q0["answer"] == "C" and q1["answer"] == "B"
    with Image.open(io.BytesIO(q1["image"]["bytes"])) as im:
        assert im.size == (40, 30)  # a float grey array, scaled to 0..255
    assert q0["question"].startswith("In the figure") and json.loads(q0["metadata"])["subject"] == "angle"
    assert _right("Answer: C", q0) and _right("Answer: (C)", q0) and _right("Answer: 130°", q0)
    assert not _right("Answer: D", q0) and not _right("Answer: E", q0) and not _right("I think it is C or D", q0)
    assert _right("I think it is C", q0)  # a one-line answer names its option


def test_geoqa_pickle_may_only_hold_numpy_arrays(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pk"
    path.write_bytes(pickle.dumps([{"id": 0, "image": Evil()}]))
    with pytest.raises(ValueError, match=r"evil.pk: cannot read GeoQA pickle: refusing to unpickle builtins.print"):
        load_source(SourceConfig(path=str(path), format="geoqa"), "test")


def test_geoqa_json_folder_with_image_folder(tmp_path):
    (tmp_path / "json").mkdir()
    for i in (1, 2):
        rec = {k: v for k, v in _geoqa_problem(i, "B").items() if k != "image"}
        (tmp_path / "json" / f"{i}.json").write_text(json.dumps(rec))
        _png(tmp_path / "image" / f"{i}.png")
    (tmp_path / "json" / "3.json").write_text("{not json")
    table, report = load_source(SourceConfig(path=str(tmp_path / "json"), format="geoqa"), "test", skip_bad_rows=True)
    assert sorted(q["id"] for q in table.to_pylist()) == ["1", "2"]
    assert report.bad[0].id == "3" and "not valid JSON" in report.bad[0].reason


# -- M3CoT --------------------------------------------------------------------------------------


def _m3cot_rows(root):
    _png(root / "images" / "m1.png")
    _png(root / "images" / "m2.png", (0, 200, 0))
    return [{"id": "physical-commonsense-1", "category": "physical-commonsense", "image_id": "m1",
             "question": "Which object is heavier?", "choices": ["the feather", "the brick"], "context": "",
             "answer": "B", "rationale": "A brick weighs more than a feather.", "split": "test",
             "image": "images/m1.png", "domain": "commonsense", "topic": "physical-commonsense"},
            {"id": "science-2", "category": "physics", "image_id": "m2", "question": "Which force is shown?",
             "choices": ["push", "pull", "neither"], "context": "A child moves a wagon.", "answer": "A",
             "rationale": "The hand is behind the wagon. The answer is A.", "split": "test",
             "image": "images/m2.png", "domain": "science", "topic": "physics"},
            {"id": "science-3", "question": "Which?", "choices": ["x", "y"], "answer": "Q", "image": "images/m2.png"}]


def test_m3cot_jsonl_context_rationale_and_letters(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _m3cot_rows(tmp_path)))
    with pytest.raises(BadRowError, match=r"test.jsonl: row 2 \(id='science-3'\): answer label 'Q' is neither"):
        load_source(SourceConfig(path=str(path), format="m3cot"), "test")
    table, _ = load_source(SourceConfig(path=str(path), format="m3cot"), "test", skip_bad_rows=True)
    q1, q2 = _q(table, "physical-commonsense-1"), _q(table, "science-2")
    assert q2["question"] == "A child moves a wagon.\nWhich force is shown?"
    assert q1["rationale"].endswith("\nAnswer: B") and q2["rationale"].endswith("The answer is A.")
    assert json.loads(q2["metadata"])["domain"] == "science"
    assert _right("Answer: B", q1) and _right("Answer: the brick", q1) and not _right("Answer: A", q1)


def test_m3cot_hugging_face_release(tmp_path):
    import datasets

    rows = _m3cot_rows(tmp_path)[:2]
    for r in rows:
        r["image"] = str(tmp_path / r["image"])
    ds = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    table, report = load_source(SourceConfig(path=str(tmp_path / "hf"), format="m3cot"), "test")
    assert report.kept == 2 and _q(table, "science-2")["answer"] == "A"


# -- inspecting ---------------------------------------------------------------------------------


def test_benchmark_formats_take_no_column_mapping(tmp_path):
    with pytest.raises(ValueError, match="`columns` maps generic files"):
        read_source(_tabmwp(tmp_path), "tabmwp", "test", columns={"question": "q"})


def test_data_inspect_shows_counts_rows_and_bad_records(tmp_path, capsys):
    path = _tabmwp(tmp_path, missing_image=True)
    assert main(["data", "inspect", str(path)]) == 0  # format from the name
    out = capsys.readouterr().out
    assert f"{path} (tabmwp): 3 records, 2 readable, 1 bad" in out
    assert "answers: 1 multiple choice, 1 numeric, 0 text; 2 with a gold rationale" in out
    assert "scoring: tabmwp 2" in out and "metadata.ques_type: free_text 1, multi_choice 1" in out
    assert "[1] image 32x24 | 'How much money does Ann need to buy a pen and a book? (Unit: dollars)'" in out
    assert "bad records by reason: image file not found (1)" in out and "(id='3')" in out

    split = _chartqa(tmp_path)
    assert main(["data", "inspect", str(split), "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert "(chartqa): 5 records, 4 readable, 1 bad" in out and "images: 2 distinct (2.00 questions per image)" in out

    (tmp_path / "odd.json").write_text("[]")
    with pytest.raises(SystemExit, match="cannot tell the format"):
        main(["data", "inspect", str(tmp_path / "odd.json")])
    with pytest.raises(SystemExit, match="not valid JSON"):
        (tmp_path / "clevr_bad.json").write_text("{oops")
        main(["data", "inspect", str(tmp_path / "clevr_bad.json")])


def test_a_run_config_reads_benchmark_splits(tmp_path):
    """data.source=files with a benchmark format per split, as configs/*-vllm.yaml do."""
    from r3v.config import load_config
    from r3v.datasets import load_splits

    path = _tabmwp(tmp_path)
    chart = _chartqa(tmp_path)
    cfg = load_config(overrides=["data.source=files", "data.skip_bad_rows=true", "data.allow_split_overlap=true",
                                 f"data.seed_split.path={path}", "data.seed_split.format=tabmwp",
                                 f"data.train_split.path={chart}", "data.train_split.format=chartqa",
                                 f"data.test_split.path={path}", "data.test_split.format=tabmwp"])
    splits = load_splits(cfg.data)
    assert {k: t.num_rows for k, (t, _) in splits.items()} == {"seed": 3, "train": 4, "test": 3}
    assert all(r["rationale"] for r in splits["seed"][0].to_pylist())  # TabMWP's solutions: a seed split
    assert len(splits["train"][1].bad) == 1


@pytest.mark.parametrize("label, letter", [("B", "B"), ("(c)", "C"), (1, "B"), (np.int64(3), "D"), ("2", "C")])
def test_choice_labels(label, letter):
    from r3v.benchmarks import _letter

    assert _letter(label, 4) == letter


@pytest.mark.parametrize("label", ["", "()", "AB", None, True, 1.0, 4, "E", "Z"])
def test_bad_choice_labels_are_refused(label):
    from r3v.benchmarks import _letter

    with pytest.raises(ValueError, match="answer label"):
        _letter(label, 4)
