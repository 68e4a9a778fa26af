"""Pretraining the embedded model's vision tower, the stand-in for a real VLM's pretrained CLIP.

Real VLMs start from a vision encoder pretrained on millions of images; ours starts from random
weights, and a warm-up on a thousand rationales then learns the rationales' language but not to
look: `r3v image-reliance` measured a loss gap of 0.0000 for such a model. So the build
pretrains the CLIP tower on freshly generated scenes of every task family (never the seed, train
or test images) with dense labels: every patch is classified as background or what lies over it
(a shape's colour and kind, a bar's colour, a table's swatch or digit), through a linear head that
is thrown away afterwards. The language model and projector stay as built; the warm-up teaches
them to read the tower's features.
"""

from __future__ import annotations

import io
import logging
import random
import time

import numpy as np
import torch
from PIL import Image

from r3v.config import EmbeddedBenchConfig, EmbeddedModelConfig
from r3v.embedded.bench import suite

log = logging.getLogger(__name__)

CLASSES = ["background"] + [c for fam in suite.FAMILIES.values() for c in fam.CLASSES]
_INDEX = {c: i for i, c in enumerate(CLASSES)}


def patch_labels(scene, size: int, patch: int, family: str = "clevr_math") -> np.ndarray:
    """[g*g] class ids in row-major patch order for a scene of `family`."""
    names = suite.FAMILIES[family].patch_classes(scene, size, patch)
    return np.vectorize(_INDEX.__getitem__, otypes=[np.int64])(names).reshape(-1)


def scenes(rng: random.Random, n: int, mcfg: EmbeddedModelConfig) -> tuple[list[Image.Image], np.ndarray]:
    """`n` fresh scenes cycling through every family, with their patch labels."""
    tcfg = EmbeddedBenchConfig(image_size=mcfg.image_size)
    images, labels = [], []
    families = list(suite.FAMILIES.values())
    for i in range(n):
        fam = families[i % len(families)]
        scene = suite.make_scene(fam, rng, tcfg)
        images.append(Image.open(io.BytesIO(fam.render(scene, mcfg.image_size))).convert("RGB"))
        labels.append(patch_labels(scene, mcfg.image_size, mcfg.patch_size, fam.NAME))
    return images, np.stack(labels)


def pretrain_vision(model, processor, mcfg: EmbeddedModelConfig) -> dict[str, float]:
    """Train `model`'s vision tower in place on dense patch labels; returns final facts."""
    if mcfg.vision_pretrain_steps <= 0:
        return {}
    tower = model.model.vision_tower
    head = torch.nn.Linear(tower.config.hidden_size, len(CLASSES))
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=mcfg.vision_pretrain_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / mcfg.vision_pretrain_steps))
    rng = random.Random(f"{mcfg.init_seed}:vision-pretrain")
    tower.train()
    t0, facts = time.perf_counter(), {}
    for step in range(mcfg.vision_pretrain_steps):
        images, labels = scenes(rng, mcfg.vision_pretrain_batch, mcfg)
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        feats = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-1][:, 1:]  # drop CLS
        logits = head(feats)
        target = torch.from_numpy(labels)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(CLASSES)), target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0 or step + 1 == mcfg.vision_pretrain_steps:
            pred = logits.argmax(-1)
            fg = target > 0
            facts = {"step": step + 1, "loss": loss.item(), "patch_accuracy": float((pred == target).float().mean()),
                     "object_patch_accuracy": float((pred[fg] == target[fg]).float().mean()),
                     "seconds": round(time.perf_counter() - t0, 1)}
            log.info("vision pretraining %s", facts)
    tower.eval()
    return facts
