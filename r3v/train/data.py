"""Training examples and the collator with per-role label spans.

An `Example` is one chat turn pair: prompt messages (with the image) and the assistant target.
Labels cover only the target span and its end-of-turn token — the rationale for SFT, y+ for
refine, the answer for select — everything else (system/user text, image tokens, padding) is
-100. Encoding goes through the model's own processor and chat template, so the image tokens and
turn markers are the family's own.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from r3v import prompts

log = logging.getLogger(__name__)

IGNORE = -100
KINDS = ("sft", "refine", "select")
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True)
class Example:
    kind: str  # sft | refine | select
    image: bytes
    messages: tuple  # prompt messages, r3v.prompts
    target: str  # assistant text to learn


@dataclass
class Encoded:
    kind: int
    input_ids: torch.Tensor  # [L]
    labels: torch.Tensor  # [L]
    vision: dict[str, torch.Tensor]  # processor outputs other than text (pixel_values, grids, …), batch dim 1


def examples_from_sets(rows: Iterable[dict], questions: dict[str, dict]) -> list[Example]:
    """Set rows (SET_SCHEMA) + questions by id -> Examples with the R3V prompts."""
    out = []
    for r in rows:
        q = questions[r["question_id"]]
        image, choices = q["image"]["bytes"], q["choices"]
        if r["kind"] == "sft":
            msgs = prompts.cot(q["question"], choices)
        elif r["kind"] == "refine":
            msgs = prompts.refine(q["question"], r["negative"], choices)
        elif r["kind"] == "select":
            msgs = prompts.select(q["question"], r["candidates"], choices)
        else:
            raise ValueError(f"set row {r['example_id']}: unknown kind {r['kind']!r}")
        out.append(Example(r["kind"], image, tuple(msgs), r["target"]))
    return out


def seed_examples(questions: Iterable[dict], direct_answers: bool) -> list[Example]:
    """The warm-up set: question -> gold rationale, and question -> `Answer: X`."""
    out = []
    for q in questions:
        img = q["image"]["bytes"]
        if q.get("rationale"):
            out.append(Example("sft", img, tuple(prompts.cot(q["question"], q["choices"])), q["rationale"]))
        if direct_answers:
            out.append(Example("sft", img, tuple(prompts.direct(q["question"], q["choices"])),
                               prompts.answer_target(q["answer"])))
    return out


def encode(processor, ex: Example, max_length: int) -> Encoded | None:
    """Tokenise prompt + target with the chat template; labels on the target span only.

    Returns None when the prompt alone does not fit in `max_length`.
    """
    image = Image.open(io.BytesIO(ex.image)).convert("RGB")
    convo = list(ex.messages) + [{"role": "assistant", "content": [{"type": "text", "text": ex.target}]}]
    prompt_text = processor.apply_chat_template(list(ex.messages), add_generation_prompt=True, tokenize=False)
    full_text = processor.apply_chat_template(convo, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
    full = processor(images=[image], text=[full_text], return_tensors="pt")
    n_prompt = processor(images=[image], text=[prompt_text], return_tensors="pt")["input_ids"].shape[1]
    ids = full["input_ids"][0]  # [L]
    if n_prompt >= max_length:
        return None
    labels = torch.full_like(ids, IGNORE)
    labels[n_prompt:] = ids[n_prompt:]
    eos = processor.tokenizer.eos_token_id
    tail = (ids[n_prompt:] == eos).nonzero()
    if len(tail):  # stop the labels at the end-of-turn token (what follows it is template filler)
        labels[n_prompt + int(tail[0]) + 1:] = IGNORE
    ids, labels = ids[:max_length], labels[:max_length]
    vision = {k: v for k, v in full.items() if k not in ("input_ids", "attention_mask")}
    return Encoded(KIND_INDEX[ex.kind], ids, labels, vision)


def encode_all(processor, examples: Sequence[Example], max_length: int) -> list[Encoded]:
    out = [e for e in (encode(processor, ex, max_length) for ex in examples) if e is not None]
    if len(out) < len(examples):
        log.warning("dropped %d examples whose prompt exceeds train.max_length=%d",
                    len(examples) - len(out), max_length)
    return out


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids/labels/attention_mask [B, L], kinds [B], vision tensors concatenated."""
    L = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), L), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n], labels[i, :n], mask[i, :n] = e.input_ids, e.labels, 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": mask,
           "kinds": torch.tensor([e.kind for e in batch], dtype=torch.long)}
    for key in batch[0].vision:
        out[key] = torch.cat([e.vision[key] for e in batch], dim=0)
    return out
