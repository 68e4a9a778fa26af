"""Per-kind token-mean losses (R3V Eq. 2-5), with the expected numbers worked out by hand."""

import math

import torch

from r3v.trainer.data import IGNORE
from r3v.trainer.loss import per_kind_losses, r3v_loss


def test_token_means_per_kind_and_weighted_sum():
    """Vocabulary of 2, uniform logits -> every target token costs ln 2.

    Row 0 (sft) has 3 target tokens, row 1 (refine) 1, row 2 (select) 2 — each term is a mean over
    its own tokens, so each is ln 2 whatever its length, and the total is (1 + 0.5 + 2) * ln 2.
    Then row 0's logits favour its targets strongly: L_SFT falls, L_REF and L_SEL do not move.
    """
    B, L, V = 3, 5, 2
    logits = torch.zeros(B, L, V)
    labels = torch.full((B, L), IGNORE)
    labels[0, 2:5] = 1  # 3 tokens (predicted from positions 1..3)
    labels[1, 4] = 0  # 1 token
    labels[2, 3:5] = 1  # 2 tokens
    kinds = torch.tensor([0, 1, 2])
    total, m = r3v_loss(logits, labels, kinds, {"sft": 1.0, "refine": 0.5, "select": 2.0})
    ln2 = math.log(2)
    assert math.isclose(m["loss/sft"], ln2, rel_tol=1e-6)
    assert math.isclose(m["loss/refine"], ln2, rel_tol=1e-6)
    assert math.isclose(m["loss/select"], ln2, rel_tol=1e-6)
    assert math.isclose(float(total), 3.5 * ln2, rel_tol=1e-6)
    assert (m["tokens/sft"], m["tokens/refine"], m["tokens/select"]) == (3, 1, 2)

    logits[0, 1:4, 1] = 10.0
    terms = per_kind_losses(logits, labels, kinds)
    assert terms["sft"][0] < 1e-3 and math.isclose(float(terms["refine"][0]), ln2, rel_tol=1e-6)


def test_absent_kind_contributes_nothing():
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[IGNORE, 2, 3]])
    total, m = r3v_loss(logits, labels, torch.tensor([1]), {"sft": 1.0, "refine": 1.0, "select": 1.0})
    assert "loss/sft" not in m and "loss/select" not in m
    assert math.isclose(float(total), math.log(4), rel_tol=1e-6)
