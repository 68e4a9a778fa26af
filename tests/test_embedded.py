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


def test_patch_labels_mark_the_patches_under_each_object():
    import numpy as np

    from r3v.embedded.bench.shapes import Obj
    from r3v.embedded.model.vision import CLASSES, patch_labels

    objs = [Obj("red", "square", x=12, y=12, r=5), Obj("blue", "circle", x=50, y=40, r=5)]
    labels = patch_labels(objs, size=64, patch=8).reshape(8, 8)
    red, blue = CLASSES.index("red square"), CLASSES.index("blue circle")
    # patch centres at 4, 12, 20, ...: the red box [7, 17] holds centre 12 only (patch 1); blue x [45, 55]
    # holds 52 (patch 6), y [35, 45] holds 36 and 44 (patches 4, 5)
    assert np.argwhere(labels == red).tolist() == [[1, 1]]
    assert np.argwhere(labels == blue).tolist() == [[4, 6], [5, 6]]
    assert (labels > 0).sum() == 3


def test_patch_labels_for_bars_and_table_cells():
    import numpy as np

    from r3v.embedded.bench.charts import Bar
    from r3v.embedded.bench.tables import Row
    from r3v.embedded.model.vision import CLASSES, patch_labels

    bars = [Bar("red", slot=0, units=2), Bar("blue", slot=3, units=5)]
    labels = patch_labels(bars, size=64, patch=8, family="chart").reshape(8, 8)
    assert np.argwhere(labels == CLASSES.index("red bar")).tolist() == [[6, 1], [7, 1]]  # 2 units tall
    assert (labels == CLASSES.index("blue bar")).sum() == 5 and (labels[:, 7] > 0).sum() == 5
    rows = [Row("green", 7), Row("yellow", 3)]
    labels = patch_labels(rows, size=64, patch=8, family="table").reshape(8, 8)
    assert labels[0, 2] == CLASSES.index("green swatch") and labels[0, 5] == CLASSES.index("digit 7")
    assert labels[2, 2] == CLASSES.index("yellow swatch") and labels[2, 5] == CLASSES.index("digit 3")
    assert (labels > 0).sum() == 4


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
    from r3v.embedded.model.reading import _sums, _text_batch

    pairs = reading._scenes(random.Random(0), 6, 64)
    rows = suite.generate("seed", 6, EmbeddedBenchConfig())
    # what pretraining reads aloud is how a gold rationale starts (same words, same order rule)
    heads = {json.loads(r["metadata"])["family"]: r["rationale"].split(".")[0].split(":")[0] for r in rows}
    assert sorted(text.split(":")[0] for _, text in pairs[:3]) == sorted(heads.values())
    for prompt, result in _sums(random.Random(1), 200):  # single equations, right, never a chain
        a, op, b, eq = prompt.split(" ")
        assert eq == "=" and result.startswith(" ") and result.endswith(".")
        assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(result.strip(" .")) >= 0
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
    assert len(lines) == 128 and sum(" | " in line for line in lines) == 32
    assert len(reading._text_lines(random.Random(4), EmbeddedModelConfig(induction_pretrain=False))) == 64
    tok = build_tokenizer(EmbeddedModelConfig())
    batch = _text_batch(tok, ["3 + 4 = 7.", "12 - 5 = 7."])
    assert batch["input_ids"].shape == batch["labels"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
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
