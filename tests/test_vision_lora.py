"""ViT-LoRA next to LLM-LoRA (SQ-LLaVA): one peft config, rank and alpha per tower, and the vision
LoRA really trains (the authors' released code runs the vision tower under no_grad)."""

import json

import torch

from r3v import prompts
from r3v.config import EmbeddedBenchConfig
from r3v.embedded.bench.suite import generate
from r3v.models import add_lora, load_model
from r3v.trainer.data import Example, collate, encode
from r3v.trainer.loss import r3v_loss

WEIGHTS = {"sft": 1.0, "refine": 1.0, "select": 1.0, "sq": 1.0}


def _batch(processor):
    qs = generate("seed", 4, EmbeddedBenchConfig())
    return collate([encode(processor, Example("sft", q["image"]["bytes"], tuple(prompts.cot(q["question"])),
                                              q["rationale"]), 512) for q in qs], processor.tokenizer.pad_token_id)


def _step_loss(model, batch):
    b = dict(batch)
    labels, kinds = b.pop("labels"), b.pop("kinds")
    loss, _ = r3v_loss(model(**b).logits, labels, kinds, WEIGHTS)
    return loss


def test_vision_lora_gets_gradients_and_its_own_rank(small_model, processor, tmp_path):
    model = add_lora(load_model(small_model), r=8, alpha=16, dropout=0.0, vision_r=4, vision_alpha=4)
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    vision = {n: p for n, p in lora.items() if ".vision_tower." in n}
    language = {n: p for n, p in lora.items() if ".language_model." in n}
    assert vision and language and set(vision) | set(language) == set(lora)
    assert all(p.shape[0] == 4 for n, p in vision.items() if "lora_A" in n)
    assert all(p.shape[0] == 8 for n, p in language.items() if "lora_A" in n)
    q_proj = next(m for n, m in model.named_modules() if n.endswith("vision_tower.encoder.layers.0.self_attn.q_proj"))
    assert q_proj.scaling["default"] == 1.0  # alpha 4 / r 4, the language model's is 16 / 8
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)

    batch = _batch(processor)
    opt = torch.optim.SGD([p for p in lora.values()], lr=1.0)
    _step_loss(model, batch).backward()
    # B starts at zero, so at first only B receives a gradient; every vision LoRA B gets one
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in vision.items() if "lora_B" in n)
    opt.step()
    opt.zero_grad()
    _step_loss(model, batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in vision.items() if "lora_A" in n)

    # saved as one adapter with the per-tower rank and alpha; loads and merges back the same
    model.eval()
    with torch.no_grad():
        b = {k: v for k, v in batch.items() if k not in ("labels", "kinds")}
        before = model(**b).logits
    model.save_pretrained(tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert set(cfg["rank_pattern"].values()) == {4} and set(cfg["alpha_pattern"].values()) == {4}
    merged = load_model(small_model, adapter=tmp_path / "adapter")
    with torch.no_grad():
        after = merged(**b).logits
    assert torch.allclose(before, after, atol=1e-4)
    base = load_model(small_model)
    with torch.no_grad():
        assert not torch.allclose(base(**b).logits, after, atol=1e-4)
