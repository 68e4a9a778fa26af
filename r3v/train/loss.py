"""The objective: L = λ_sft·L_SFT + λ_ref·L_REF + λ_sel·L_SEL (+ λ_sq·L_SQ).

R3V (Cheng et al., 2025, Eq. 5) and SQ-LLaVA's self-questioning (Sun et al., 2024).

Each term is the token-mean negative log-likelihood of its own examples' target spans:
  L_SFT = -mean log p(y+ | x, I)                 (Eq. 2: rationale of a positive sample)
  L_REF = -mean log p(y+ | x, y-, I)             (Eq. 3: correct a negative into a positive)
  L_SEL = -mean log p(a | x, y_1..y_N, I)        (Eq. 4: the gold answer among N candidates)
  L_SQ  = -mean log p(q | [vusr], history, I)     (SQ-LLaVA: the virtual user's question tokens)
Token means are taken per term over the micro-batch, so a term's weight does not depend on how
long its targets are or how many of its examples the batch happens to hold. A term with no
tokens in the batch contributes nothing (and is reported as None).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from r3v.train.data import IGNORE, KINDS


def per_kind_losses(logits: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor
                    ) -> dict[str, tuple[torch.Tensor, int]]:
    """{kind: (token-mean loss, n target tokens)} for the kinds present in the batch.

    logits [B, L, V], labels [B, L] (IGNORE off-target), kinds: [B] (one kind per row) or [B, L]
    (per token: a multi-turn sample's question and answer tokens feed different terms), index
    into KINDS.
    """
    shift_logits = logits[:, :-1].float()  # [B, L-1, V]
    shift_labels = labels[:, 1:]  # [B, L-1]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE, reduction="none")  # [B, L-1]
    target = shift_labels != IGNORE  # [B, L-1]
    token_kinds = kinds[:, 1:] if kinds.dim() == 2 else kinds[:, None]  # [B, L-1] or [B, 1]
    out = {}
    for i, kind in enumerate(KINDS):
        m = target & (token_kinds == i)
        n = int(m.sum())
        if n:
            out[kind] = ((nll * m).sum() / n, n)
    return out


def r3v_loss(logits: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor, weights: dict[str, float]
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the per-kind token means, and metrics `loss/<kind>`, `tokens/<kind>`."""
    terms = per_kind_losses(logits, labels, kinds)
    total = sum((weights[k] * loss for k, (loss, _) in terms.items()), torch.zeros((), device=logits.device))
    metrics = {"loss/total": float(total.detach())}
    for k, (loss, n) in terms.items():
        metrics[f"loss/{k}"] = float(loss.detach())
        metrics[f"tokens/{k}"] = n
    return total, metrics
