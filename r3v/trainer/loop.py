"""One explicit training loop: shuffle, micro-batches, accumulation, clipping, schedule, logging,
mixed precision, gradient checkpointing, data parallelism and mid-training checkpoints.

Used for the warm-up (full fine-tuning, a fixed number of steps) and for each R3V iteration
(LoRA, a number of epochs over the iteration's sets).

Data parallelism (torchrun, DDP): every process draws the same seeded sequence of micro-batches
and takes every world-th one of each optimizer step, so a step sees the same `grad_accum`
micro-batches whatever the number of processes; DDP averages the gradients, each process's
micro-batch losses are scaled by 1 / (its share of grad_accum), and the update equals the
single-process one to float tolerance.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from r3v.device import autocast_dtype
from r3v.progress import bar as progress_bar
from r3v.trainer import dist, state
from r3v.trainer.data import Encoded, collate
from r3v.trainer.loss import Objective

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
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    gradient_checkpointing: bool = False
    lean_loss: bool = True
    loss_chunk_mb: int = 256
    save_every: int = 0  # optimizer steps between mid-training checkpoints (0: none)


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to `min_ratio`; a multiplier of the base lr."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def enable_gradient_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing on every layer stack of the model (language model
    and vision tower): no input needs to require grad, so a frozen tower or embedding in front of
    LoRA layers still passes gradients to them."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(hf, "supports_gradient_checkpointing", False):
        raise ValueError(f"train.gradient_checkpointing: {type(hf).__name__} does not support it")
    hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def micro_batches(data: Sequence[Encoded], batch_size: int, group_by_length: bool, seed: int):
    """Epochs of shuffled micro-batches, a seeded function of `seed`: the k-th micro-batch is the
    same in every process and every attempt. With group_by_length, examples are sorted by length
    within windows of 16 batches (less padding, faster), at the price of batches that hold mostly
    one kind of example (short SFT apart from long select prompts)."""
    gen = torch.Generator().manual_seed(seed)
    window = batch_size * 16 if group_by_length else batch_size
    while True:
        order = torch.randperm(len(data), generator=gen).tolist()
        batches = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w:w + window], key=lambda j: len(data[j].input_ids))
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        for b in torch.randperm(len(batches), generator=gen).tolist():
            yield [data[j] for j in batches[b]]


def train(model, data: Sequence[Encoded], spec: LoopSpec, weights: dict[str, float], pad_id: int,
          on_step: Callable[[dict], None] | None = None, progress: bool = True,
          state_dir: str | Path | None = None) -> list[dict]:
    """Train `model`'s trainable parameters on `data` on the model's device; returns one log
    record per optimizer step. With `state_dir`, a checkpoint found there is resumed and a new
    one is written every `spec.save_every` steps. Under torch.distributed, data-parallel."""
    if not data:
        raise ValueError("no training examples")
    world, rank = dist.world(), dist.rank()
    if spec.grad_accum % world:
        raise ValueError(f"train.grad_accum={spec.grad_accum} is not a multiple of the {world} processes")
    device = next(model.parameters()).device
    amp = autocast_dtype(spec.precision)
    groups: dict[float, list] = {spec.lr: []}  # the base group first: its lr is the one logged
    named = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            if amp is torch.float16 and p.dtype == torch.float16:
                raise ValueError(f"train.precision=fp16 needs float32 trainable parameters; {name} is float16 "
                                 "(model.dtype=float16: train LoRA only, or use bf16)")
            lr = next((lr for key, lr in spec.lr_by_name if key in name), spec.lr)
            groups.setdefault(lr, []).append(p)
            named[name] = p
    params = [p for ps in groups.values() for p in ps]
    if spec.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    objective = Objective(model, weights, spec.lean_loss, spec.loss_chunk_mb)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
    # fused: one kernel per step, no per-parameter temporaries (less memory, faster than foreach)
    opt = torch.optim.AdamW([{"params": ps, "lr": lr} for lr, ps in groups.items() if ps], lr=spec.lr,
                            weight_decay=spec.weight_decay, fused=device.type in ("cpu", "cuda", "mps"))
    per_step = spec.batch_size * spec.grad_accum
    steps_per_epoch = max(1, math.ceil(len(data) / per_step))
    total = spec.max_steps or max(1, round(spec.epochs * steps_per_epoch))
    warmup = spec.warmup_steps or int(spec.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, total, warmup, spec.min_lr_ratio))
    scaler = torch.amp.GradScaler(device.type) if amp is torch.float16 else None
    fingerprint = {"examples": len(data), "total_steps": total, "batch_size": spec.batch_size,
                   "grad_accum": spec.grad_accum, "seed": spec.seed, "lr": spec.lr, "precision": spec.precision}
    start, records = state.load(state_dir, named, opt, sched, scaler, fingerprint)
    attempt = 1 + max((r.get("attempt", 0) for r in records), default=-1)
    batches = micro_batches(data, spec.batch_size, spec.group_by_length, spec.seed)
    for _ in range(start * spec.grad_accum):  # the data order is a function of the step
        next(batches)
    local_accum = spec.grad_accum // world
    model.train()
    bar = progress_bar(range(start, total), desc="train", unit="step", disable=not progress or rank > 0, leave=False,
               initial=start, total=total)
    for step in bar:
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        mine = [b for j, b in enumerate(next(batches) for _ in range(spec.grad_accum)) if j % world == rank]
        for j, micro in enumerate(mine):
            batch = collate(micro, pad_id)
            labels, kinds = batch.pop("labels").to(device), batch.pop("kinds").to(device)
            batch = {k: v.to(device) for k, v in batch.items()}
            sync = j == local_accum - 1 or world == 1  # DDP all-reduces on the step's last micro-batch
            with (nullcontext() if sync else objective.no_sync()), \
                    (torch.autocast(device.type, dtype=amp) if amp is not None else nullcontext()):
                loss, terms = objective(batch, labels, kinds)
            scaled = loss / local_accum
            (scaler.scale(scaled) if scaler else scaled).backward()
            for k, v in ((f"loss/{k}", float(t.detach())) for k, (t, _) in terms.items()):
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            for k, (_, n) in terms.items():
                sums[f"tokens/{k}"] = sums.get(f"tokens/{k}", 0) + n
            sums["loss/total"] = sums.get("loss/total", 0.0) + float(loss.detach())
            counts["loss/total"] = counts.get("loss/total", 0) + 1
        sums, counts = _across_processes(sums, counts, device)
        # losses: mean over the micro-batches that had the term; token counts: summed
        acc = {k: sums[k] / counts[k] if k.startswith("loss/") else int(sums[k]) for k in sums}
        if scaler:
            scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        rec = {"step": step, "epoch": (step + 1) / steps_per_epoch, "lr": sched.get_last_lr()[0],
               "grad_norm": float(grad_norm), "seconds": time.perf_counter() - t0, "total_steps": total,
               "attempt": attempt, **acc}
        records.append(rec)
        bar.set_postfix(loss=f"{acc['loss/total']:.3f}")
        if on_step:
            on_step(rec)
        if state_dir is not None and spec.save_every and (step + 1) % spec.save_every == 0 and step + 1 < total:
            state.save(state_dir, named, opt, sched, scaler, step + 1, records, fingerprint)
    model.eval()
    return records


def _across_processes(sums: dict[str, float], counts: dict[str, float], device) -> tuple[dict, dict]:
    """Sums and counts of the step's metrics over every process (the same numbers as one process)."""
    if dist.world() == 1:
        return sums, counts
    keys = sorted(set().union(*dist.gather(sorted(sums))))
    values = dist.all_sum([sums.get(k, 0.0) for k in keys] + [counts.get(k, 0) for k in keys], device)
    return dict(zip(keys, values[:len(keys)])), {k: c for k, c in zip(keys, values[len(keys):]) if c}
