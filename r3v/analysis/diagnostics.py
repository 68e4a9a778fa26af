"""Diagnostics of a model, beyond accuracy.

`image_reliance`: does the model use the image? The mean token loss of gold rationales with each
example's own image, against the same with the images rotated one place through the batch (each
text paired with another example's image). A model that reads its image loses more with the
wrong one; a gap of ~0 means it answers from the text alone, so its right answers are guesses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from r3v.trainer.data import collate, encode_all, seed_examples
from r3v.trainer.loss import r3v_loss


@torch.inference_mode()
def image_reliance(model, processor, questions: Sequence[dict], batch_size: int = 16,
                   max_length: int = 512) -> dict[str, float]:
    """{loss_true, loss_shuffled, gap} over `questions` that carry a gold rationale."""
    data = encode_all(processor, seed_examples([q for q in questions if q.get("rationale")], False), max_length)
    if len(data) < 2:
        raise ValueError("image_reliance needs at least two questions with a gold rationale")
    weights = {"sft": 1.0, "refine": 0.0, "select": 0.0}
    sums = {"true": 0.0, "shuffled": 0.0}
    tokens = 0
    model.eval()
    for i in range(0, len(data), batch_size):
        chunk = data[i:i + batch_size]
        if len(chunk) < 2:  # a lone example cannot be paired with another's image
            chunk = data[i - 1:i + 1]
        batch = collate(chunk, processor.tokenizer.pad_token_id)
        if batch.get("pixel_values") is None or batch["pixel_values"].shape[0] != len(chunk):
            raise ValueError("image_reliance needs one pixel_values entry per example (LLaVA-style processors)")
        labels, kinds = batch.pop("labels"), batch.pop("kinds")
        n = int((labels[:, 1:] != -100).sum())
        for name, pix in (("true", batch["pixel_values"]), ("shuffled", batch["pixel_values"].roll(1, 0))):
            inputs = {k: v.to(model.device) for k, v in {**batch, "pixel_values": pix}.items()}
            _, metrics = r3v_loss(model(**inputs).logits, labels.to(model.device), kinds.to(model.device), weights)
            sums[name] += metrics["loss/sft"] * n
        tokens += n
    true, shuffled = sums["true"] / tokens, sums["shuffled"] / tokens
    return {"loss_true": true, "loss_shuffled": shuffled, "gap": shuffled - true, "examples": len(data)}
