"""The trainer on real hardware settings, on the embedded model: device resolution, the lean loss
(equal to full logits), bf16/fp16, gradient checkpointing (same gradients, less memory)."""

import math

import pytest
import torch

from r3v import prompts
from r3v.config import ConfigError, EmbeddedBenchConfig, load_config
from r3v.device import resolve
from r3v.embedded.bench.suite import generate
from r3v.models import add_lora, load_model
from r3v.trainer.data import Example, collate, encode_all
from r3v.trainer.loop import LoopSpec, train
from r3v.trainer.loss import Objective, lean_parts

WEIGHTS = {"sft": 1.0, "refine": 0.5, "select": 2.0, "sq": 1.0}


def _examples(n: int = 8) -> list[Example]:
    """SFT, refine and select examples (three loss terms in one batch)."""
    out = []
    for i, q in enumerate(generate("seed", n, EmbeddedBenchConfig())):
        img, kind = q["image"]["bytes"], ("sft", "refine", "select")[i % 3]
        if kind == "sft":
            msgs = prompts.cot(q["question"], q["choices"])
        elif kind == "refine":
            msgs = prompts.refine(q["question"], "Objects: none. Answer: 0", q["choices"])
        else:
            msgs = prompts.select(q["question"], ["Answer: 1", q["rationale"], "Answer: 7"], q["choices"])
        out.append(Example(kind, img, tuple(msgs), q["rationale"] if kind != "select" else f"Answer: {q['answer']}"))
    return out


def _lora(path, dtype="float32", vision_r=0):
    return add_lora(load_model(path, dtype), r=8, alpha=16, dropout=0.0, seed=0, vision_r=vision_r)


def _loss_and_grads(model, batch, **kw):
    b = dict(batch)
    labels, kinds = b.pop("labels"), b.pop("kinds")
    obj = Objective(model, WEIGHTS, **kw)
    total, terms = obj(b, labels, kinds)
    model.zero_grad()
    total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(total.detach()), {k: float(v.detach()) for k, (v, _) in terms.items()}, grads


def test_device_is_resolved_and_checked_and_not_hashed():
    assert resolve("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match=r"run.device=cuda:1: torch sees no CUDA device"):
            resolve("cuda:1")
    with pytest.raises(ConfigError, match="run.device"):
        load_config(overrides=["run.device=gpu0"])
    base = load_config()
    for moved in (["run.device=cuda:3"], ["train.processes=2"], ["train.gradient_checkpointing=true"],
                  ["train.save_every=7", "train.lean_loss=false"]):
        assert load_config(overrides=moved).hash() == base.hash(), moved  # resumes on another machine
    assert load_config(overrides=["train.precision=bf16"]).hash() != base.hash()
    with pytest.raises(ConfigError, match="train.grad_accum=2 must be a multiple of train.processes=3"):
        load_config(overrides=["train.processes=3"])


def test_lean_loss_equals_full_logits_loss_and_gradients(small_model, processor):
    """Same per-kind token means and LoRA gradients as the [B, L, V] path, in one chunk and in many."""
    model = _lora(small_model)
    assert lean_parts(model) is not None
    batch = collate(encode_all(processor, _examples(), 512), processor.tokenizer.pad_token_id)
    full = _loss_and_grads(model, batch, lean=False)
    assert set(full[1]) == {"sft", "refine", "select"}
    lean = _loss_and_grads(model, batch, lean=True)
    obj = Objective(model, WEIGHTS, lean=True)
    assert obj.chunk_tokens > int((batch["labels"] != -100).sum())  # 640-word vocabulary: one chunk
    chunked = Objective(model, WEIGHTS, lean=True)
    chunked.chunk_tokens = 7  # many chunks, each recomputed in the backward pass
    b = dict(batch)
    labels, kinds = b.pop("labels"), b.pop("kinds")
    model.zero_grad()
    total, _ = chunked(b, labels, kinds)
    total.backward()
    many = (float(total), None, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for got in (lean, many):
        assert math.isclose(got[0], full[0], rel_tol=1e-5)
        for name, g in full[2].items():
            torch.testing.assert_close(got[2][name], g, rtol=1e-4, atol=1e-6)
    for k, v in full[1].items():
        assert math.isclose(lean[1][k], v, rel_tol=1e-5)


def test_bf16_trains_with_float32_lora_and_fp16_scales(small_model, processor):
    data = encode_all(processor, _examples(4), 512)
    pad = processor.tokenizer.pad_token_id
    model = _lora(small_model, "bfloat16")  # bf16 weights, LoRA (and so AdamW state) float32
    lora = [p for n, p in model.named_parameters() if p.requires_grad]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    assert next(p for n, p in model.named_parameters() if "embed_tokens" in n).dtype == torch.bfloat16
    # (bf16 matmuls are ~12x slower than float32 on this CPU: few steps)
    logs = train(model, data, LoopSpec(lr=3e-3, batch_size=4, max_steps=2, precision="bf16"), WEIGHTS, pad,
                 progress=False)
    assert logs[-1]["loss/total"] < 0.95 * logs[0]["loss/total"]
    assert all(p.dtype == torch.float32 for p in lora)
    model = _lora(small_model)  # float32 weights, fp16 autocast with a gradient scaler
    # the scaler skips the steps whose scaled gradients overflow while it lowers its scale from
    # 65536 (measured on the embedded model: 3 steps), then trains
    logs = train(model, data, LoopSpec(lr=3e-3, batch_size=4, max_steps=5, precision="fp16"), WEIGHTS, pad,
                 progress=False)
    assert all(math.isfinite(r["loss/total"]) for r in logs) and logs[-1]["loss/total"] < logs[0]["loss/total"]


def test_gradient_checkpointing_same_gradients(small_model, processor):
    """LoRA on the language model and the vision tower: the same loss and gradients with it."""
    from r3v.trainer.loop import enable_gradient_checkpointing

    batch = collate(encode_all(processor, _examples(4), 512), processor.tokenizer.pad_token_id)
    model = _lora(small_model, vision_r=4)
    model.train()
    plain = _loss_and_grads(model, batch)
    enable_gradient_checkpointing(model)
    assert model.get_base_model().is_gradient_checkpointing
    ckpt = _loss_and_grads(model, batch)
    assert math.isclose(ckpt[0], plain[0], rel_tol=1e-6)
    vision = [n for n in plain[2] if ".vision_tower." in n and "lora_B" in n]
    assert vision and all(ckpt[2][n].abs().sum() > 0 for n in vision)
    for name, g in plain[2].items():
        torch.testing.assert_close(ckpt[2][name], g, rtol=1e-5, atol=1e-7)


PEAK_SCRIPT = """
import sys, torch
from r3v.config import EmbeddedBenchConfig
from r3v.embedded.bench.suite import generate
from r3v.models import add_lora, load_model, load_processor
from r3v.trainer.loop import enable_gradient_checkpointing
from r3v.trainer.loss import Objective
from r3v.trainer.memory import peak

torch.set_num_threads(2)
path, ckpt = sys.argv[1], sys.argv[2] == "1"
processor = load_processor(path)
text = " ".join(q["rationale"] for q in generate("seed", 40, EmbeddedBenchConfig()))
ids = processor.tokenizer(text, return_tensors="pt")["input_ids"][:, :700].repeat(8, 1)
assert ids.shape == (8, 700)
model = add_lora(load_model(path, "float32"), r=8, alpha=16, dropout=0.0, seed=0)
model.train()
if ckpt:
    enable_gradient_checkpointing(model)
obj = Objective(model, {"sft": 1.0, "refine": 1.0, "select": 1.0})
with peak() as m:
    obj({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids.clone(), torch.zeros(8, dtype=torch.long))[0].backward()
print(m["bytes"])
"""


def test_gradient_checkpointing_lowers_peak_memory(small_model):
    """One LoRA step on 8 x 700-token text examples (the activations dominate), measured with
    r3v.trainer.memory.peak (the process's RSS high-water mark on this CPU) in a fresh process per
    setting: in the test process, memory earlier tests freed and the allocator kept hides part
    of a peak (measured: 0.62 there, 0.36 in fresh processes)."""
    import subprocess
    import sys

    used = {}
    for ckpt in (False, True):
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(small_model), str(int(ckpt))],
                             capture_output=True, text=True, check=True).stdout
        used[ckpt] = int(out.strip().splitlines()[-1])
    assert used[True] < 0.6 * used[False], used


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_lean_loss_equals_full_on_qwen_vl_layouts(family):
    """Qwen-VL's body computes its own 3-D rope positions from the image grid: the lean path
    (body + head) gives the full path's loss and gradients on an image + text batch (a tiny random
    model and synthetic inputs: these processors need torchvision, which this environment keeps out)."""
    import transformers as tf

    v, side = 512, 4  # vocabulary; 4 x 4 patches of 14 px, merged 2 x 2: 4 image tokens
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=v, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                                       "mrope_section": [2, 3, 3]})
    if family == "qwen2_vl":
        cls, ccls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLConfig
        vision = dict(depth=1, embed_dim=32, num_heads=2, hidden_size=64, patch_size=14)
    else:
        cls, ccls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLConfig
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2, patch_size=14,
                      fullatt_block_indexes=[0])
    cfg = ccls(text_config=text, vision_config=vision, image_token_id=v - 3, video_token_id=v - 4,
               vision_start_token_id=v - 2, vision_end_token_id=v - 1)
    torch.manual_seed(0)
    model = add_lora(cls(cfg), r=4, alpha=8, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.tensor([[v - 2] + [v - 3] * 4 + [v - 1]] * 2), torch.randint(0, v - 8, (2, 20), generator=g)], 1)
    labels = ids.clone()
    labels[:, :12] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "kinds": torch.tensor([0, 1]),
             "pixel_values": torch.randn(2 * side * side, 3 * 2 * 14 * 14, generator=g),
             "image_grid_thw": torch.tensor([[1, side, side]] * 2), "mm_token_type_ids": (ids == v - 3).long()}
    assert lean_parts(model) is not None
    full, lean = _loss_and_grads(model, batch, lean=False), _loss_and_grads(model, batch, lean=True)
    assert math.isclose(lean[0], full[0], rel_tol=1e-5) and lean[1].keys() == full[1].keys() == {"sft", "refine"}
    for name, grad in full[2].items():
        torch.testing.assert_close(lean[2][name], grad, rtol=1e-4, atol=1e-6)
