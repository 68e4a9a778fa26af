"""Label spans: only the role's target (and its end-of-turn) is labelled, per kind."""

import pytest
import torch

from r3v import prompts
from r3v.embedded.bench.suite import EmbeddedBenchConfig, generate
from r3v.trainer.data import IGNORE, Example, collate, encode

Q = generate("seed", 1, EmbeddedBenchConfig())[0]
IMG = Q["image"]["bytes"]
CASES = [
    Example("sft", IMG, tuple(prompts.cot(Q["question"])), Q["rationale"]),
    Example("refine", IMG, tuple(prompts.refine(Q["question"], "Objects: red circle. Total: 1. Answer: 1")),
            Q["rationale"]),
    Example("select", IMG, tuple(prompts.select(Q["question"], ["A. Answer: 1", "B. Answer: 2", "C. Answer: 3"])),
            prompts.answer_target(Q["answer"])),
]


@pytest.mark.parametrize("ex", CASES, ids=[c.kind for c in CASES])
def test_labels_decode_to_the_target_only(processor, ex):
    enc = encode(processor, ex, max_length=512)
    labelled = enc.labels[enc.labels != IGNORE]
    assert processor.tokenizer.decode(labelled) == ex.target + processor.tokenizer.eos_token
    # the labelled span is contiguous and is the end of the sequence's real tokens
    idx = (enc.labels != IGNORE).nonzero().flatten()
    assert torch.equal(idx, torch.arange(idx[0], idx[0] + len(idx)))
    assert torch.equal(enc.input_ids[idx], labelled)
    # nothing of the prompt — image tokens, instruction, the wrong rationale or candidates — is labelled
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert (enc.input_ids[: idx[0]] == image_id).sum() == 64


def test_collate_pads_right_and_keeps_kinds(processor):
    batch = collate([encode(processor, ex, 512) for ex in CASES], processor.tokenizer.pad_token_id)
    labelled = batch["labels"] != IGNORE
    assert [set(batch["kinds"][i][labelled[i]].tolist()) for i in range(3)] == [{0}, {1}, {2}]  # per token
    assert (batch["kinds"][~labelled] == -1).all()
    assert batch["pixel_values"].shape == (3, 3, 64, 64)
    lengths = batch["attention_mask"].sum(1)
    for i, n in enumerate(lengths.tolist()):
        assert (batch["labels"][i, n:] == IGNORE).all() and (batch["attention_mask"][i, :n] == 1).all()


def test_truncation_never_drops_the_prompt(processor):
    assert encode(processor, CASES[2], max_length=40) is None  # the prompt alone is longer
