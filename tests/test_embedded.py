"""The embedded model loads like any HF VLM, offline, in vLLM's key layout; tasks are seeded."""

import io
import json
import re

import pytest
from PIL import Image

from r3v.config import EmbeddedBenchConfig
from r3v.embedded.bench import suite
from r3v.judge import extract_answer


def test_reloads_with_auto_classes_offline(small_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, info = AutoModelForImageTextToText.from_pretrained(str(small_model), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    n = sum(p.numel() for p in model.parameters())
    assert 1e6 < n < 2e7, n  # "a few million parameters"
    processor = AutoProcessor.from_pretrained(str(small_model))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    enc = processor(images=[Image.new("RGB", (64, 64))], text=[text], return_tensors="pt")
    assert int((enc["input_ids"] == model.config.image_token_id).sum()) == 64  # (64 / 8)^2 patches
    assert model(**enc).logits.shape[-1] == model.config.text_config.vocab_size


def test_checkpoint_keys_are_vllm_layout(small_model):
    from safetensors import safe_open

    with safe_open(str(small_model / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    vision = [k for k in keys if k.startswith("vision_tower.")]
    assert vision and all(k.startswith("vision_tower.vision_model.") for k in vision)
    assert any(k.startswith("language_model.") for k in keys)
    assert any(k.startswith("multi_modal_projector.") for k in keys)


def test_tasks_are_seeded_and_consistent():
    from r3v.judge import judge_for_question

    cfg = EmbeddedBenchConfig(seed=7)
    a, b = suite.generate("seed", 72, cfg), suite.generate("seed", 72, cfg)
    assert a == b
    assert suite.generate("train", 5, cfg)[0]["image"] != a[0]["image"]
    seen: dict[str, set] = {}
    for r in a:
        meta = json.loads(r["metadata"])
        seen.setdefault(meta["family"], set()).add(meta["level"])
        assert r["id"].startswith(suite.FAMILIES[meta["family"]].PREFIX + "-seed-")
        assert extract_answer(r["rationale"]) == r["answer"]  # the gold rationale ends in the gold answer
        assert judge_for_question(r["rationale"], r)[1].correct, r  # and the judge accepts it
        # the rationale first reads the scene as it is
        if meta["family"] == "clevr_math":
            assert re.match(r"Objects: (.*?)\.", r["rationale"]).group(1).split(", ") == meta["objects"]
        else:
            key, head = ("bars", "Bars") if meta["family"] == "chart" else ("table", "Table")
            read = re.match(rf"{head}: (.*?)\.", r["rationale"]).group(1).split(", ")
            assert dict((c, int(v)) for c, v in (x.split(" ") for x in read)) == meta[key]
        assert meta["answer_type"] == "integer" and r["choices"] is None
        img = Image.open(io.BytesIO(r["image"]["bytes"]))
        assert img.size == (cfg.image_size, cfg.image_size)
        # one equation per step, each right, and its results are the ones the metadata keeps
        eqs = re.findall(r"((?:(?:[a-z]+ )?\d+ [-+] )+(?:[a-z]+ )?\d+) = (\d+)", r["rationale"])
        assert len(eqs) == meta["level"] and [int(x) for _, x in eqs] == meta["results"]
        for lhs, result in eqs:
            terms = [t for t in lhs.split(" ") if not t.isalpha()]
            value = int(terms[0])
            for op, y in zip(terms[1::2], terms[2::2]):
                value += int(y) if op == "+" else -int(y)
            assert value == int(result) >= 0, lhs
    assert seen == {name: {1, 2} for name in suite.FAMILIES}  # the seed split: levels 1-2
    assert all(r["rationale"] is None for r in suite.generate("train", 5, cfg))  # answer-only split


def test_levels_per_split_easy_to_hard():
    import pytest

    from r3v.config import ConfigError, load_config

    cfg = EmbeddedBenchConfig()

    def levels(split, n=60, c=cfg):
        return sorted({json.loads(r["metadata"])["level"] for r in suite.generate(split, n, c)})

    assert (levels("seed"), levels("train"), levels("test")) == ([1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5])
    assert levels("test", c=EmbeddedBenchConfig(test_levels="3,6-7")) == [3, 6, 7]
    # every family at every level, in equal shares
    rows = suite.generate("test", 150, cfg)
    mix = {(json.loads(r["metadata"])["family"], json.loads(r["metadata"])["level"]) for r in rows}
    assert len(mix) == 15
    with pytest.raises(ConfigError, match="data.embedded.train_levels: bad level range '4-2'"):
        load_config(overrides=["data.embedded.train_levels=4-2"])
    with pytest.raises(ConfigError, match="data.embedded.test_levels: bad level 'x'"):
        load_config(overrides=["data.embedded.test_levels=x"])


def test_family_mix_is_configurable_and_validated():
    import pytest

    from r3v.config import ConfigError, load_config

    rows = suite.generate("test", 9, EmbeddedBenchConfig(families="table, chart"))
    assert [json.loads(r["metadata"])["family"] for r in rows[:4]] == ["table", "chart", "table", "chart"]
    with pytest.raises(ConfigError, match="data.embedded.families.*'charts'"):
        load_config(overrides=["data.embedded.families=clevr_math,charts"])


def test_answers_are_exact_integers():
    from r3v.judge import judge_for_question

    rows = suite.generate("test", 30, EmbeddedBenchConfig())
    for r in rows:
        gold = int(r["answer"])
        assert judge_for_question(f"Answer: {gold}", r)[1].correct
        # no relaxed credit: 5% of a chain's 200 would accept the neighbouring multiple of 10
        assert not judge_for_question(f"Answer: {gold + 1}", r)[1].correct
        if gold >= 25:
            assert not judge_for_question(f"Answer: {gold * 1.04:.1f}", r)[1].correct


def test_image_reaches_the_language_model(small_model, processor):
    """On the freshly built model, pairing rationales with the wrong images changes their loss:
    the image path is wired (a trained model with gap ~0 has learned to ignore it)."""
    import pytest

    from r3v.analysis.diagnostics import image_reliance
    from r3v.config import load_config
    from r3v.embedded.bench import suite
    from r3v.models import load_model

    questions = suite.generate("seed", 6, load_config().data.embedded)
    r = image_reliance(load_model(small_model), processor, questions, batch_size=4)
    assert r["examples"] == 6 and abs(r["gap"]) > 1e-4
    with pytest.raises(ValueError, match="at least two"):
        image_reliance(load_model(small_model), processor, questions[:1])


def test_patch_labels_mark_the_patch_of_each_object():
    """Perception by design: each object sits inside one patch of a 4 x 4 grid of slots (patches
    1, 3, 5, 7), so its patch label is one cell; the listing's order is the slots' reading order."""
    import numpy as np

    from r3v.embedded.bench.shapes import Obj, place_objects, reading
    from r3v.embedded.model.vision import CLASSES, patch_labels

    objs = [Obj("red", "square", row=0, col=0), Obj("blue", "circle", row=2, col=3)]
    labels = patch_labels(objs, size=64, patch=8).reshape(8, 8)
    assert np.argwhere(labels == CLASSES.index("red square")).tolist() == [[1, 1]]
    assert np.argwhere(labels == CLASSES.index("blue circle")).tolist() == [[5, 7]]
    assert (labels > 0).sum() == 2
    placed = place_objects(__import__("random").Random(3), 5)
    assert [(o.row, o.col) for o in placed] == sorted((o.row, o.col) for o in placed)  # reading order
    assert reading(objs) == "Objects: red square, blue circle."


def test_patch_labels_for_bars_and_table_cells():
    """A bar's value is printed as a digit glyph in its slot's top cell, the table's glyphs."""
    import numpy as np

    from r3v.embedded.bench.charts import Bar
    from r3v.embedded.bench.tables import Row
    from r3v.embedded.model.vision import CLASSES, patch_labels

    bars = [Bar("red", slot=0, value=2), Bar("blue", slot=3, value=5)]
    labels = patch_labels(bars, size=64, patch=8, family="chart").reshape(8, 8)
    # value 2 is 12 px tall: the rows whose centre (4, 12, ..., 60) lies in [52, 63]: 6 and 7
    assert np.argwhere(labels == CLASSES.index("red bar")).tolist() == [[6, 1], [7, 1]]
    assert (labels == CLASSES.index("blue bar")).sum() == 4 and labels[0, 7] == CLASSES.index("digit 5")
    assert labels[0, 1] == CLASSES.index("digit 2") and (labels[0] > 0).sum() == 2
    rows = [Row("green", 7), Row("yellow", 3)]
    labels = patch_labels(rows, size=64, patch=8, family="table").reshape(8, 8)
    assert labels[0, 2] == CLASSES.index("green swatch") and labels[0, 5] == CLASSES.index("digit 7")
    assert labels[2, 2] == CLASSES.index("yellow swatch") and labels[2, 5] == CLASSES.index("digit 3")
    assert (labels > 0).sum() == 4


def test_answers_spread_and_every_step_reads_the_image_first():
    """Answers spread over many values (a guess is rarely right) and level 1 always reads the image."""
    from collections import Counter

    rows = suite.generate("test", 1500, EmbeddedBenchConfig())
    answers = Counter(r["answer"] for r in rows)
    assert len(answers) >= 50 and answers.most_common(1)[0][1] / len(rows) <= 0.03
    for r in rows:
        meta = json.loads(r["metadata"])
        assert 10 <= meta["start"] <= 59 and all(0 <= x <= 100 for x in meta["results"])
    for r in suite.generate("seed", 300, EmbeddedBenchConfig()):
        if json.loads(r["metadata"])["level"] == 1:  # its one step adds or subtracts a value it reads
            assert re.search(r"\. \d+ [-+] [a-z]+ \d+ = \d+\. Answer: ", r["rationale"]), r["rationale"]


def test_freeze_vision_tower_leaves_projector_and_language_model_trainable(small_model):
    from r3v.models import freeze_vision_tower, load_model

    model = load_model(small_model)
    n = freeze_vision_tower(model)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert n == sum(p.numel() for name, p in model.named_parameters() if name in frozen) > 0
    assert all("vision_tower" in name for name in frozen)
    assert any("multi_modal_projector" in name and p.requires_grad for name, p in model.named_parameters())
    assert any("language_model" in name and p.requires_grad for name, p in model.named_parameters())


def test_reading_pretraining_examples_are_the_rationales_words():
    import random

    from r3v.config import EmbeddedModelConfig
    from r3v.embedded.model import reading
    from r3v.embedded.model.build import build_tokenizer
    from r3v.embedded.bench.common import COLOURS
    from r3v.embedded.model.reading import _sums

    pairs = reading._scenes(random.Random(0), 6, 64)
    rows = suite.generate("seed", 6, EmbeddedBenchConfig())
    # what pretraining reads aloud is how a gold rationale starts (same words, same order rule)
    heads = {json.loads(r["metadata"])["family"]: r["rationale"].split(".")[0].split(":")[0] for r in rows}
    assert sorted(text.split(":")[0] for _, text, _ in pairs[:3]) == sorted(heads.values())
    assert all(q is None for _, _, q in pairs)
    asked = reading._scenes(random.Random(0), 30, 64, asked=1.0)  # a question about the scene, any level
    assert all(q and q.endswith("?") for _, _, q in asked)
    for prompt, result in _sums(random.Random(1), 200):  # single equations, right, never a chain
        a, op, b, eq = prompt.split(" ")
        assert eq == "=" and result.startswith(" ") and result.endswith(".") and int(b) <= 9
        assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(result.strip(" .")) >= 0
        assert int(result.strip(" .")) <= 99
    for prompt, result in reading._steps(random.Random(5), 200):  # a step in a rationale's shape, right
        listing, _, rest = prompt.partition(". ")
        items = listing.split(": ")[1].split(", ")
        if listing.startswith("Objects"):  # counts: the total, each colour's objects
            values = {"total": len(items), **{c: sum(x.startswith(c + " ") for x in items) for c in COLOURS}}
        else:
            values = dict((k, int(v)) for k, _, v in (x.rpartition(" ") for x in items))
        text = prompt + result
        eqs = re.findall(r"(\d+) ([-+]) (?:([a-z]+) )?(\d+) = (\d+)\.", text)
        assert 1 <= len(eqs) <= 3 and text.endswith(".")
        for a, op, name, b, c in eqs:
            assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c)
            if name:
                assert values[name] == int(b)
        assert re.fullmatch(r" \d+ = \d+\.", result), result  # the asked value and the result
    for prompt, copy in reading._copies(random.Random(2), 100):  # the list again, word for word
        words = prompt.removesuffix(" |")
        assert copy == f" {words}." and 2 <= len(words.split()) <= 7
        assert set(words.split()) <= set(reading.WORDS)
    for prompt, answers in reading._recalls(random.Random(3), 100):  # each colour asked, its listed value
        listing, asked = prompt.split(". ")
        values = dict(pair.split(" ") for pair in listing.split(", "))
        said = [asked + answers.split(".")[0]] + [a.strip() for a in answers.split(".")[1:] if a.strip()]
        assert all(values[k] == v for k, v in (a.split(" ") for a in said)), (prompt, answers)
        assert len({a.split(" ")[0] for a in said}) == len(said) <= len(values)
    lines = reading._text_lines(random.Random(4), EmbeddedModelConfig())
    assert len(lines) == 128 and sum(" | " in line for line in lines) == 16
    assert sum(line.startswith(("Table:", "Bars:", "Objects:")) for line in lines) == 64
    assert len(reading._text_lines(random.Random(4), EmbeddedModelConfig(induction_pretrain=False))) == 32
    tok = build_tokenizer(EmbeddedModelConfig())
    packed = reading._packed_batch(tok, ["3 + 4 = 7.", "red 3 blue | red 3 blue."] * 20, length=16)
    ids = packed["input_ids"][packed["attention_mask"] == 1].tolist()  # every line, in order, each ended
    one = tok("3 + 4 = 7.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    two = tok("red 3 blue | red 3 blue.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids == (one + two) * 20 and packed["input_ids"].shape[1] == 16
    assert (packed["labels"][packed["attention_mask"] == 0] == -100).all()


@pytest.mark.slow
def test_the_build_records_each_pretraining_phase_and_each_learns(embedded_model):
    """The slow tier's build (tests/model.yaml: the default model, fewer pretraining steps) records
    its three phases and each has learnt. What the default build reaches (reading scenes
    exactly, sums, copies, look-ups) needs its full ~11 minutes: bench/build.py checks that."""
    import yaml
    from conftest import TEST_MODEL

    steps = yaml.safe_load(TEST_MODEL.read_text())["model"]["embedded"]
    facts = json.loads((embedded_model / "r3v_embedded.json").read_text())
    vision, text, reading = (facts[k] for k in ("vision_pretraining", "text_pretraining", "reading_pretraining"))
    assert vision["step"] == steps["vision_pretrain_steps"] and vision["object_patch_accuracy"] > 0.5, vision  # 0.83
    # an untrained LM's loss is ln(640 words) = 6.46 a token (and the reading phase sums two such losses)
    assert text["steps"] == steps["text_pretrain_steps"] and text["loss"] < 3.0, text  # 1.60
    assert reading["steps"] == steps["reading_pretrain_steps"] and reading["loss"] < 4.0, reading  # 2.33
    assert set(reading) >= {"held_out_read_exactly", "held_out_sums_right", "held_out_copied_exactly",
                            "held_out_looked_up_right"}
