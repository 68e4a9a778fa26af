"""The objective's terms, declared once: L = Σ_t λ_t · L_t.

R3V (Cheng et al., 2025, Eq. 5) trains L_SFT + L_REF + L_SEL; SQ-LLaVA (Sun et al., 2024) adds
L_SQ. Each term here names the set kinds whose target tokens feed it, the config key of its
weight λ (and of the switch that turns it on), what the warm-up does with it, its columns in
`train_log` and its keys in the per-step log. The loss (r3v/trainer/loss.py), the weights each stage
trains with, the train_log schema and the rows written to it all read TERMS, so a new term is one
entry here plus the examples that feed it. This module imports nothing heavy (no torch).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    name: str  # the term's key everywhere: loss/<name>, loss_<name>, the examples' loss kind
    symbol: str
    meaning: str
    weight_key: str  # the config key of λ
    feeds: tuple[str, ...]  # set kinds (sets/kind=<kind>/) whose examples' targets count in this term
    enabled_key: str | None = None  # a boolean config key that must be on for the term to train
    warmup_weight: float | None = None  # the warm-up's fixed weight; None: λ (when enabled)

    @property
    def log_key(self) -> str:
        return f"loss/{self.name}"

    @property
    def tokens_key(self) -> str:
        return f"tokens/{self.name}"

    @property
    def loss_column(self) -> str:
        return f"loss_{self.name}"

    @property
    def tokens_column(self) -> str:
        return f"tokens_{self.name}"


TERMS: tuple[Term, ...] = (
    Term("sft", "L_SFT", "-mean log p(y+ | x, I): the rationale of a positive sample (Eq. 2); also the role "
         "turns of a positive Questioner-Answerer-Reasoner chain", "train.lambda_sft", ("sft", "qar"), warmup_weight=1.0),
    Term("refine", "L_REF", "-mean log p(y+ | x, y-, I): correct a negative rationale into a positive (Eq. 3)",
         "train.lambda_ref", ("refine",), warmup_weight=0.0),
    Term("select", "L_SEL", "-mean log p(a | x, y_1..y_N, I): the gold answer among N candidates (Eq. 4)",
         "train.lambda_sel", ("select",), warmup_weight=0.0),
    Term("sq", "L_SQ", "-mean log p(q | [vusr], history, I): the virtual user's question tokens (SQ-LLaVA)",
         "sq.lambda_sq", ("sq",), enabled_key="sq.enabled"),
)
TERM_NAMES: tuple[str, ...] = tuple(t.name for t in TERMS)
TERM_INDEX: dict[str, int] = {name: i for i, name in enumerate(TERM_NAMES)}
# set kind -> the term its targets feed
TERM_OF_KIND: dict[str, str] = {kind: t.name for t in TERMS for kind in t.feeds}


def _get(cfg, key: str):
    return functools.reduce(getattr, key.split("."), cfg)


def weights(cfg, stage: str) -> dict[str, float]:
    """{term: λ} that `stage` ("warmup" or "train") trains with under `cfg`. The warm-up is
    warm-up (plain SFT, plus L_SQ when self-questioning is on); a term switched off weighs 0."""
    if stage not in ("warmup", "train"):
        raise ValueError(f"stage must be 'warmup' or 'train', got {stage!r}")
    out = {}
    for t in TERMS:
        if t.enabled_key is not None and not _get(cfg, t.enabled_key):
            out[t.name] = 0.0
        elif stage == "warmup" and t.warmup_weight is not None:
            out[t.name] = t.warmup_weight
        else:
            out[t.name] = float(_get(cfg, t.weight_key))
    return out
