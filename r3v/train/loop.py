"""One explicit training loop: shuffle, micro-batches, accumulation, clipping, schedule, logging.

Used for the seed stage (full fine-tuning, a fixed number of steps) and for each R3V iteration
(LoRA, a number of epochs over the iteration's sets).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from r3v.train.data import Encoded, collate
from r3v.train.loss import r3v_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSpec:
    lr: float
    batch_size: int
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    group_by_length: bool = False
    seed: int = 0
    lr_by_name: tuple[tuple[str, float], ...] = ()
    """(substring, lr): trainable parameters whose name holds the substring get their own lr
    (the first match wins); the schedule scales every group alike."""


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to `min_ratio`; a multiplier of the base lr."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(model, data: Sequence[Encoded], spec: LoopSpec, weights: dict[str, float], pad_id: int,
          on_step: Callable[[dict], None] | None = None, progress: bool = True) -> list[dict]:
    """Train `model`'s trainable parameters on `data`; returns one log record per optimizer step."""
    if not data:
        raise ValueError("no training examples")
    groups: dict[float, list] = {spec.lr: []}  # the base group first: its lr is the one logged
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr = next((lr for key, lr in spec.lr_by_name if key in name), spec.lr)
            groups.setdefault(lr, []).append(p)
    params = [p for ps in groups.values() for p in ps]
    opt = torch.optim.AdamW([{"params": ps, "lr": lr} for lr, ps in groups.items() if ps], lr=spec.lr,
                            weight_decay=spec.weight_decay)
    per_step = spec.batch_size * spec.grad_accum
    steps_per_epoch = max(1, math.ceil(len(data) / per_step))
    total = spec.max_steps or max(1, round(spec.epochs * steps_per_epoch))
    warmup = spec.warmup_steps or int(spec.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, total, warmup, spec.min_lr_ratio))
    gen = torch.Generator().manual_seed(spec.seed)

    def micro_batches():
        # Epochs of shuffled micro-batches. With group_by_length, examples are sorted by length
        # within windows of 16 batches (less padding, faster), at the price of batches that hold
        # mostly one kind of example (short SFT apart from long select prompts).
        window = spec.batch_size * 16 if spec.group_by_length else spec.batch_size
        while True:
            order = torch.randperm(len(data), generator=gen).tolist()
            batches = []
            for w in range(0, len(order), window):
                chunk = sorted(order[w:w + window], key=lambda j: len(data[j].input_ids))
                batches += [chunk[i:i + spec.batch_size] for i in range(0, len(chunk), spec.batch_size)]
            for b in torch.randperm(len(batches), generator=gen).tolist():
                yield [data[j] for j in batches[b]]

    batches = micro_batches()
    model.train()
    records = []
    bar = tqdm(range(total), desc="train", unit="step", disable=not progress, leave=False)
    for step in bar:
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for _ in range(spec.grad_accum):
            batch = collate(next(batches), pad_id)
            labels, kinds = batch.pop("labels"), batch.pop("kinds")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            logits = model(**batch).logits  # [B, L, V]
            loss, metrics = r3v_loss(logits, labels.to(model.device), kinds.to(model.device), weights)
            (loss / spec.grad_accum).backward()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
        # losses: mean over the micro-batches that had the term; token counts: summed
        acc = {k: sums[k] / counts[k] if k.startswith("loss/") else sums[k] for k in sums}
        grad_norm = torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        rec = {"step": step, "epoch": (step + 1) / steps_per_epoch, "lr": sched.get_last_lr()[0],
               "grad_norm": float(grad_norm), "seconds": time.perf_counter() - t0, "total_steps": total, **acc}
        records.append(rec)
        bar.set_postfix(loss=f"{acc['loss/total']:.3f}")
        if on_step:
            on_step(rec)
    model.eval()
    return records
