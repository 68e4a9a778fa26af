"""The objective's loss: L = λ_sft·L_SFT + λ_ref·L_REF + λ_sel·L_SEL (+ λ_sq·L_SQ), its terms
declared in r3v/objective.py.

R3V (Cheng et al., 2025, Eq. 5) and SQ-LLaVA's self-questioning (Sun et al., 2024).

Each term is the token-mean negative log-likelihood of its own examples' target spans:
  L_SFT = -mean log p(y+ | x, I)                 (Eq. 2: rationale of a positive sample)
  L_REF = -mean log p(y+ | x, y-, I)             (Eq. 3: correct a negative into a positive)
  L_SEL = -mean log p(a | x, y_1..y_N, I)        (Eq. 4: the gold answer among N candidates)
  L_SQ  = -mean log p(q | [vusr], history, I)     (SQ-LLaVA: the virtual user's question tokens)
Token means are taken per term over the micro-batch, so a term's weight does not depend on how
long its targets are or how many of its examples the batch happens to hold. A term with no
tokens in the batch contributes nothing (and is reported as None).

`Objective` is what training calls. Its lean path (`train.lean_loss`) runs the model's body to
hidden states and applies the language-model head only at labelled positions, in chunks whose
logits are recomputed in the backward pass, so loss memory no longer grows with
length x vocabulary (Qwen2-VL: 151k); the per-kind token means are the same to float tolerance.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from r3v.objective import TERM_NAMES
from r3v.trainer.data import IGNORE

log = logging.getLogger(__name__)


def per_kind_losses(logits: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor
                    ) -> dict[str, tuple[torch.Tensor, int]]:
    """{kind: (token-mean loss, n target tokens)} for the kinds present in the batch.

    logits [B, L, V], labels [B, L] (IGNORE off-target), kinds: [B] (one kind per row) or [B, L]
    (per token: a multi-turn sample's question and answer tokens feed different terms), index
    into r3v.objective.TERM_NAMES.
    """
    shift_logits = logits[:, :-1].float()  # [B, L-1, V]
    shift_labels = labels[:, 1:]  # [B, L-1]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE, reduction="none")  # [B, L-1]
    target = shift_labels != IGNORE  # [B, L-1]
    token_kinds = kinds[:, 1:] if kinds.dim() == 2 else kinds[:, None]  # [B, L-1] or [B, 1]
    out = {}
    for i, kind in enumerate(TERM_NAMES):
        m = target & (token_kinds == i)
        n = int(m.sum())
        if n:
            out[kind] = ((nll * m).sum() / n, n)
    return out


def _nll(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")  # [N]


def lean_per_kind_losses(hidden: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor, kinds: torch.Tensor,
                         chunk_tokens: int) -> dict[str, tuple[torch.Tensor, int]]:
    """`per_kind_losses` from hidden states [B, L, H]: the head runs on the labelled positions only,
    `chunk_tokens` at a time; with more than one chunk each chunk's logits are recomputed in the
    backward pass instead of kept (so at most one chunk of [chunk_tokens, V] logits lives at once)."""
    # position i predicts token i+1: shift the labels, not the hidden states (a slice of these would
    # cost a second [B, L, H] gradient buffer in the backward pass)
    next_labels = torch.full_like(labels, IGNORE)
    next_labels[:, :-1] = labels[:, 1:]  # [B, L]
    target = next_labels != IGNORE
    next_kinds = torch.full_like(labels, -1)
    next_kinds[:, :-1] = kinds[:, 1:] if kinds.dim() == 2 else kinds[:, None]
    token_kinds = next_kinds[target]  # [N]
    h = hidden[target]  # [N, H]
    t = next_labels[target]  # [N]
    if len(t) <= chunk_tokens:
        nll = _nll(head, h, t)
    else:
        nll = torch.cat([checkpoint(_nll, head, h[i:i + chunk_tokens], t[i:i + chunk_tokens], use_reentrant=False)
                         for i in range(0, len(t), chunk_tokens)])
    out = {}
    for i, kind in enumerate(TERM_NAMES):
        m = token_kinds == i
        n = int(m.sum())
        if n:
            out[kind] = (nll[m].sum() / n, n)
    return out


def r3v_loss(logits: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor, weights: dict[str, float]
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the per-kind token means, and metrics `loss/<kind>`, `tokens/<kind>`."""
    terms = per_kind_losses(logits, labels, kinds)
    total = weighted_total(terms, weights, logits.device)
    return total, metrics_of(total, terms)


def metrics_of(total: torch.Tensor, terms: dict[str, tuple[torch.Tensor, int]]) -> dict[str, float]:
    metrics = {"loss/total": float(total.detach())}
    for k, (loss, n) in terms.items():
        metrics[f"loss/{k}"] = float(loss.detach())
        metrics[f"tokens/{k}"] = n
    return metrics


def weighted_total(terms: dict[str, tuple[torch.Tensor, int]], weights: dict[str, float],
                   device: torch.device) -> torch.Tensor:
    return sum((weights[k] * loss for k, (loss, _) in terms.items()), torch.zeros((), device=device))


def lean_parts(model) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(body, head) of a `...ForConditionalGeneration` (peft-wrapped or not): `model.model` returns
    the final hidden states and `lm_head` maps them to logits, as in every family r3v supports.
    None for a model whose logits are more than the head of its hidden states (soft-capping or a
    logit scale), which then trains on full logits."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    body, head = getattr(hf, "model", None), hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    text = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    if body is None or head is None or any(getattr(text, k, None) for k in ("final_logit_softcapping", "logit_scale")):
        return None
    return body, head


class Objective(torch.nn.Module):
    """The training forward: model + loss in one module (what DDP wraps), returning the weighted
    total and the per-kind (token-mean loss, tokens) terms."""

    def __init__(self, model, weights: dict[str, float], lean: bool = True, chunk_mb: int = 256):
        super().__init__()
        self.model, self.weights = model, weights
        parts = lean_parts(model) if lean else None
        if lean and parts is None:
            log.warning("train.lean_loss: %s's logits are not the head of its hidden states; full logits are used",
                        type(model).__name__)
        self.parts = parts
        # labelled positions per chunk: at most chunk_mb of float32 logits
        self.chunk_tokens = max(1, chunk_mb * 2**20 // (4 * parts[1].weight.shape[0])) if parts else 0

    def forward(self, batch: dict[str, torch.Tensor], labels: torch.Tensor, kinds: torch.Tensor):
        if self.parts is not None:
            body, head = self.parts
            hidden = body(**batch, use_cache=False).last_hidden_state  # [B, L, H]
            terms = lean_per_kind_losses(hidden, head, labels, kinds, self.chunk_tokens)
        else:
            terms = per_kind_losses(self.model(**batch, use_cache=False).logits, labels, kinds)  # [B, L, V]
        return weighted_total(terms, self.weights, labels.device), terms
