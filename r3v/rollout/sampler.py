"""The Sampler protocol, its records (`SamplingParams`, `RolloutRequest`, `Completion`) and the
per-sample seeds: what every backend implements and every caller builds (r3v/rollout/__init__.py
picks the backend)."""

from __future__ import annotations

import hashlib
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
