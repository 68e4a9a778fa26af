"""Training examples and the collator with per-role label spans.

An `Example` is a chat conversation about one image and the turns whose text is learnt. Labels
cover only those target spans and their end-of-turn token — the rationale for SFT, y+ for refine,
the answer for select, the virtual user's question for self-questioning (L_SQ) — everything else
(system/user text, image tokens, template filler, padding) is -100. Each labelled token also
carries its loss term (`token_kinds`), so one multi-turn sample can feed L_SQ and L_SFT.

Rendering goes through the model's own processor and chat template, turn by turn: a target's
start is the token count of the conversation rendered up to it (with the generation prompt for
an assistant turn, up to the question for a virtual-user turn), checked to be a prefix of the
whole conversation's tokens, so the image tokens and turn markers are the family's own.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from r3v import prompts
from r3v.objective import TERM_INDEX
from r3v.prompts import Example

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class Encoded:
    kind: int
    input_ids: torch.Tensor  # [L]
    labels: torch.Tensor  # [L]
    vision: dict[str, torch.Tensor]  # processor outputs other than text (pixel_values, grids, …), batch dim 1
    token_kinds: torch.Tensor | None = None  # [L] index into r3v.objective.TERMS of each labelled token, -1 elsewhere

    def __post_init__(self):
        if self.token_kinds is None:
            self.token_kinds = torch.where(self.labels != IGNORE, self.kind, -1)


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


def anchor_examples(seed_questions: Sequence[dict], train_questions: Sequence[dict], max_rationales: int,
                    seed: int) -> list[Example]:
    """The anchor data the R3V authors keep in every iteration's training file: the warm-up's gold
    rationales (the seed split; at most `max_rationales` of them, a draw seeded by `seed`, 0: all)
    and every train question's direct answer (question -> `Answer: X`, the direct prompt)."""
    import random

    rationales = [q for q in seed_questions if q.get("rationale")]
    if 0 < max_rationales < len(rationales):
        rationales = random.Random(f"{seed}:anchor").sample(rationales, max_rationales)
    return (seed_examples(rationales, direct_answers=False)
            + [Example("sft", q["image"]["bytes"], tuple(prompts.direct(q["question"], q["choices"])),
                       prompts.answer_target(q["answer"])) for q in train_questions])


def encode(processor, ex: Example, max_length: int) -> Encoded | None:
    """Tokenise the conversation with the chat template; labels on the target turns only.

    Returns None when the text before the first target does not fit in `max_length`; later
    targets that do not fit are cut.
    """
    image = Image.open(io.BytesIO(ex.image)).convert("RGB")
    messages, targets = ex.conversation()
    full_text = prompts.render(processor, messages)
    full = processor(images=[image], text=[full_text], return_tensors="pt")
    ids = full["input_ids"][0]  # [L]
    labels = torch.full_like(ids, IGNORE)
    kinds = torch.full_like(ids, -1)
    eos = processor.tokenizer.eos_token_id
    first = None
    for index, kind in targets:
        prefix_text = prompts.target_prefix(processor, messages, index)
        if not full_text.startswith(prefix_text):
            raise ValueError("the chat template does not render the conversation up to a turn as a prefix of it")
        prefix = processor(images=[image], text=[prefix_text], return_tensors="pt")["input_ids"][0]
        n = len(prefix)
        if not torch.equal(ids[:n], prefix):
            raise ValueError(f"turn {index}: its prefix tokenises differently inside the conversation "
                             "(the tokenizer merges across the turn boundary)")
        stop = len(ids)
        if index < len(messages) - 1:  # never past the turn, whatever the template ends it with
            through = prompts.render(processor, messages[:index + 1])
            stop = len(processor(images=[image], text=[through], return_tensors="pt")["input_ids"][0])
        tail = (ids[n:stop] == eos).nonzero()
        end = n + int(tail[0]) + 1 if len(tail) else stop  # through its end-of-turn token
        labels[n:end], kinds[n:end] = ids[n:end], TERM_INDEX[kind]
        first = n if first is None else min(first, n)
    if first is None or first >= max_length:
        return None
    ids, labels, kinds = ids[:max_length], labels[:max_length], kinds[:max_length]
    # The processor's other outputs: image tensors, and per-token ones (Qwen-VL's mm_token_type_ids),
    # which are cut with the ids and padded by `collate`.
    vision = {k: (v[0, :max_length] if v.shape == full["input_ids"].shape else v)
              for k, v in full.items() if k not in ("input_ids", "attention_mask")}
    return Encoded(TERM_INDEX[ex.kind], ids, labels, vision, kinds)


def encode_all(processor, examples: Sequence[Example], max_length: int) -> list[Encoded]:
    out = [e for e in (encode(processor, ex, max_length) for ex in examples) if e is not None]
    if len(out) < len(examples):
        log.warning("dropped %d examples whose prompt exceeds train.max_length=%d",
                    len(examples) - len(out), max_length)
    return out


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids/labels/attention_mask and per-token `kinds` [B, L] (-1 off
    target), image tensors concatenated, per-token processor outputs padded."""
    L = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), L), IGNORE, dtype=torch.long)
    kinds = torch.full((len(batch), L), -1, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n], labels[i, :n], kinds[i, :n], mask[i, :n] = e.input_ids, e.labels, e.token_kinds, 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": mask, "kinds": kinds}
    for key, first in batch[0].vision.items():
        if first.dim() == 1:  # per-token (aligned with input_ids): right-padded with zeros
            out[key] = torch.zeros((len(batch), L), dtype=first.dtype)
            for i, e in enumerate(batch):
                out[key][i, :len(e.vision[key])] = e.vision[key]
        else:
            out[key] = torch.cat([e.vision[key] for e in batch], dim=0)
    return out
