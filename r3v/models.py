"""Load and save any image-text-to-text model; LoRA on its language model.

One loading path for every family: `AutoModelForImageTextToText` + `AutoProcessor` and the
processor's chat template. Checkpoints are written in the key layout vLLM loads: transformers 5
writes a LLaVA CLIP tower as `vision_tower.embeddings.*`, vLLM expects
`vision_tower.vision_model.*`; transformers reads both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from r3v import prototype
from r3v.store import atomic_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def load_processor(path: str | Path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path))
    processor.tokenizer.padding_side = "left"  # decoder-only generation
    return processor


def load_model(path: str | Path, dtype: str = "float32", adapter: str | Path | None = None,
               device: str | torch.device = "cpu"):
    """The model at `path` (HF layout; its prototype extractor too), with the peft adapter at
    `adapter` merged in, on `device` (a torch device; see r3v.device.resolve), in eval mode."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=DTYPES[dtype])
    prototype.load(model, Path(path))  # SQ-LLaVA's extractor, when the checkpoint has one
    if adapter is not None:
        from peft import PeftModel

        prototype.for_adapter(model, adapter)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.to(device).eval()


def _vllm_key(key: str, model_type: str) -> str:
    if model_type == "llava" and key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + key[len("vision_tower."):]
    return key


def save_model(model, processor, path: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Save in HF layout with vLLM's key names (a prototype extractor in its own files); written to
    a temporary folder, then renamed."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    model_type = model.config.model_type
    with atomic_dir(path) as tmp:
        ext = model._modules.pop(prototype.NAME, None)  # not an HF module: saved beside the weights
        try:
            model.save_pretrained(tmp)
        finally:
            if ext is not None:
                model._modules[prototype.NAME] = ext
        prototype.save(model, tmp)
        processor.save_pretrained(tmp)
        for f in tmp.glob("*.safetensors"):
            sd = load_file(f)
            save_file({_vllm_key(k, model_type): v for k, v in sd.items()}, f, metadata={"format": "pt"})
        index = tmp / "model.safetensors.index.json"
        if index.exists():
            data = json.loads(index.read_text())
            data["weight_map"] = {_vllm_key(k, model_type): v for k, v in data["weight_map"].items()}
            index.write_text(json.dumps(data, indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return path


VISION_PARTS = ("vision_tower", "visual", "vision_model")  # LLaVA, Qwen2-VL, others
PROJECTOR_PARTS = ("merger",)  # Qwen-VL keeps its projector inside `visual`


def _in_vision_encoder(name: str) -> bool:
    parts = name.split(".")
    return any(p in parts for p in VISION_PARTS) and not any(p in parts for p in PROJECTOR_PARTS)


def freeze_vision_tower(model) -> int:
    """Stop gradients into the vision encoder (not the projector); returns the frozen parameter count."""
    frozen = 0
    for name, p in model.named_parameters():
        if _in_vision_encoder(name):
            p.requires_grad_(False)
            frozen += p.numel()
    if not frozen:
        raise ValueError(f"no vision encoder parameters found (looked for modules named {VISION_PARTS})")
    return frozen


def language_model_linear_names(model) -> list[str]:
    """Names of the Linear layers inside the language model (not the vision tower, projector or
    head), found through the model's own `get_decoder()` (LLaVA's and Qwen-VL's `language_model`,
    Idefics3's `text_model`), not by checkpoint name."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    prefix = next((name for name, module in model.named_modules() if module is decoder and name), None)
    if prefix is None:
        raise ValueError(f"{type(model).__name__}: cannot find its language model (get_decoder); "
                         "set train.target_modules")
    names = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and name.startswith(prefix + ".")]
    if not names:
        raise ValueError(f"found no Linear layers under {prefix}; set train.target_modules")
    return names


def vision_linear_names(model) -> list[str]:
    """Names of the Linear layers inside the vision encoder (not the projector)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and _in_vision_encoder(name)]


VISION_PATTERN = r"(?:.*\.)?(?:" + "|".join(VISION_PARTS) + r")\..*"
"""peft rank/alpha pattern for every module inside a vision encoder."""


def add_lora(model, r: int, alpha: int, dropout: float, target_modules: str = "auto", seed: int = 0,
             vision_r: int = 0, vision_alpha: int = 0, modules_to_save: list[str] | None = None):
    """Wrap `model` with a fresh LoRA adapter on its language model (or modules matching a regex),
    and with `vision_r` > 0 on its vision encoder's Linear layers too, at that rank and
    `vision_alpha` (default 2 x vision_r): one peft config, rank and alpha set per tower by
    pattern (SQ-LLaVA trains a ViT LoRA r=32 next to the LLM's r=128)."""
    from peft import LoraConfig, get_peft_model

    if target_modules == "auto":
        targets = language_model_linear_names(model)
    else:
        rx = re.compile(target_modules)
        targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and rx.search(n)]
        if not targets:
            raise ValueError(f"train.target_modules={target_modules!r} matches no Linear layer")
    rank_pattern, alpha_pattern = {}, {}
    if vision_r > 0:
        vision = vision_linear_names(model)
        if not vision:
            raise ValueError(f"train.vision_lora_r={vision_r}: no Linear layers in a vision encoder "
                             f"(looked for modules named {VISION_PARTS})")
        targets = sorted(set(targets) | set(vision))
        rank_pattern = {VISION_PATTERN: vision_r}
        alpha_pattern = {VISION_PATTERN: vision_alpha or 2 * vision_r}
    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                     rank_pattern=rank_pattern, alpha_pattern=alpha_pattern, modules_to_save=modules_to_save)
    return get_peft_model(model, cfg)
