"""Reading pretraining of the embedded model: the stand-in for a real VLM's image-text alignment stage.

A real VLM reaches its reasoning fine-tuning already able to say what an image shows (LLaVA's
stage 1 aligns the projector on captions; its LM and CLIP come pretrained). Ours would otherwise
learn to read from a thousand rationales, and the measured result is a seed model whose readings
are wrong most of the time, so what self-training can keep is mostly lucky guesses. So the build,
after the vision tower's patch pretraining (r3v/embedded/model/vision.py), trains the projector and the
language model to answer "Read the image." with the scene's reading in the benchmark's own words
("Bars: red 30, blue 70, green 20." / "Objects: red circle, blue square." / "Table: red 3, blue 7."),
on freshly generated scenes of every family (never a seed, train or test image, and never a
question or a reasoning step: the chains of steps are what the seed split and self-training teach).
With `arithmetic_pretrain`, each step also trains the LM, text only, on single equations over small
numbers (`14 + 7 = 21.`): the arithmetic a real VLM's language model brings from its pretraining
(one equation at a time: never a chain, a question or an image). With `induction_pretrain`, it
also trains on the in-context skills a pretrained LM has and a 5M LM trained from scratch on a
few thousand rationales does not acquire (measured: the seed model then writes operands the
question never named): copying a list of words, and looking a value up in a listing. The facts
kept in `r3v_embedded.json` include the share of held-out scenes read exactly right, of
held-out sums completed right, of lists copied exactly and of look-ups answered right.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time

import torch
from PIL import Image

from r3v import prompts
from r3v.config import EmbeddedBenchConfig, EmbeddedModelConfig
from r3v.embedded.bench import suite
from r3v.embedded.bench.common import COLOURS
from r3v.trainer.data import IGNORE, Example, collate, encode

log = logging.getLogger(__name__)

READ_PROMPT = "Read the image."


def _scenes(rng: random.Random, n: int, size: int) -> list[tuple[bytes, str]]:
    """`n` fresh (png, reading) pairs cycling through the families."""
    tcfg = EmbeddedBenchConfig(image_size=size)
    fams = list(suite.FAMILIES.values())
    out = []
    for i in range(n):
        fam = fams[i % len(fams)]
        scene = suite.make_scene(fam, rng, tcfg)
        out.append((fam.render(scene, size), fam.reading(scene)))
    return out


def _batch(processor, pairs: list[tuple[bytes, str]]) -> dict[str, torch.Tensor]:
    enc = [encode(processor, Example("sft", png, tuple([prompts.user_turn(READ_PROMPT, image=True)]), text), 4096)
           for png, text in pairs]
    return collate(enc, processor.tokenizer.pad_token_id)


def _sums(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` single equations over small numbers, as the benchmark writes them, as (prompt,
    completion): (`14 + 7 =`, ` 21.`)."""
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 30), rng.randint(0, 9)
        if a >= b and rng.random() < 0.5:
            out.append((f"{a} - {b} =", f" {a - b}."))
        else:
            out.append((f"{a} + {b} =", f" {a + b}."))
    return out


WORDS = [*COLOURS, *map(str, range(10))]


def _copies(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` copying lines (a random list of colour words and digits, then the same list):
    (`red 3 blue |`, ` red 3 blue.`). The generic in-context copying (induction) a pretrained LM
    has and a chain of steps needs: each step takes its operand from the question's words."""
    out = []
    for _ in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        out.append((f"{words} |", f" {words}."))
    return out


def _recalls(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` look-up lines (associative recall): a listing of colours with values, then some of its
    colours, each followed by its value: (`red 3, blue 7, green 2. blue`, ` 7. red 3.`). The
    generic look-up a chain's step needs to write `blue 7` after a reading that lists blue 7."""
    out = []
    for _ in range(n):
        keys = rng.sample(list(COLOURS), rng.randint(3, 4))
        values = {k: rng.randint(1, 9) for k in keys}
        asked = rng.sample(keys, rng.randint(1, len(keys)))
        listing = ", ".join(f"{k} {values[k]}" for k in keys)
        rest = "".join(f" {k} {values[k]}." for k in asked[1:])
        out.append((f"{listing}. {asked[0]}", f" {values[asked[0]]}.{rest}"))
    return out


def _text_batch(tokenizer, lines: list[str]) -> dict[str, torch.Tensor]:
    ids = [tokenizer(line, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for line in lines]
    L = max(map(len, ids))
    input_ids = torch.full((len(ids), L), tokenizer.pad_token_id)
    labels = torch.full((len(ids), L), IGNORE)
    mask = torch.zeros((len(ids), L), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = labels[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _packed_batch(tokenizer, lines: list[str], length: int = 128) -> dict[str, torch.Tensor]:
    """`lines` (each ended by the end-of-turn token) packed one after another into rows of
    `length` tokens, as LM pretraining packs documents: no padding is computed, and a row holds
    several lines in context."""
    flat: list[int] = []
    for line in lines:
        flat += tokenizer(line, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    rows = max(1, -(-len(flat) // length))
    input_ids = torch.full((rows, length), tokenizer.pad_token_id)
    labels = torch.full((rows, length), IGNORE)
    mask = torch.zeros((rows, length), dtype=torch.long)
    for r in range(rows):
        chunk = torch.tensor(flat[r * length:(r + 1) * length])
        input_ids[r, :len(chunk)] = labels[r, :len(chunk)] = chunk
        mask[r, :len(chunk)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def completion_accuracy(model, tokenizer, pairs: list[tuple[str, str]], first_only: bool = False) -> float:
    """Share of held-out (prompt, completion) pairs the LM completes right (greedy, text only);
    `first_only`: only the completion's first sentence counts (a look-up's first answer). One
    left-padded batch (one `generate` a pair cost ~12 ms of set-up each: 7 s of every build)."""
    expects = [c.split(".")[0] + "." if first_only else c for _, c in pairs]
    n_new = max(len(tokenizer(e, add_special_tokens=False)["input_ids"]) for e in expects) + 1
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer([p for p, _ in pairs], return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n_new, do_sample=False)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(t.strip().startswith(e.strip()) for t, e in zip(texts, expects)) / len(pairs)


def read_accuracy(model, processor, pairs: list[tuple[bytes, str]], max_new_tokens: int = 48) -> float:
    """Share of `pairs` whose greedy reading is exactly the truth."""
    tok = processor.tokenizer
    prompt = prompts.render(processor, [prompts.user_turn(READ_PROMPT, image=True)], generation_prompt=True)
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png, _ in pairs]
    enc = processor(images=images, text=[prompt] * len(pairs), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(t.strip() == truth for t, (_, truth) in zip(texts, pairs)) / len(pairs)


def _text_lines(rng: random.Random, mcfg: EmbeddedModelConfig, n: int = 128) -> list[str]:
    """One step's text-only lines: half sums (`arithmetic_pretrain`), a quarter copies and a
    quarter look-ups (`induction_pretrain`), shuffled into one batch (128: 64, 32, 32)."""
    pairs = _sums(rng, n // 2) if mcfg.arithmetic_pretrain else []
    if mcfg.induction_pretrain:
        pairs += _copies(rng, n // 4) + _recalls(rng, n // 4)
    rng.shuffle(pairs)
    return [p + c for p, c in pairs]


def _text_facts(model, tokenizer, mcfg: EmbeddedModelConfig) -> dict[str, float]:
    held = random.Random(f"{mcfg.init_seed}:text-held-out")
    sums, copies, recalls = _sums(held, 100), _copies(held, 100), _recalls(held, 100)
    facts = {}
    if mcfg.arithmetic_pretrain:
        facts["held_out_sums_right"] = completion_accuracy(model, tokenizer, sums)
    if mcfg.induction_pretrain:
        facts["held_out_copied_exactly"] = completion_accuracy(model, tokenizer, copies)
        facts["held_out_looked_up_right"] = completion_accuracy(model, tokenizer, recalls, first_only=True)
    return facts


def _schedule(opt, steps: int):
    """Linear warm-up over 20 steps, then cosine decay to 5%."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 0.5 * (1 + math.cos(s / steps * math.pi))))


def _optimise(params: list, lr: float, steps: int, step_loss, what: str, every: int) -> tuple[float, float]:
    """`steps` AdamW steps on `step_loss()` (clipped at norm 1, `_schedule`'s warm-up and cosine),
    logged every `every` steps as `what`; returns (the last loss, seconds)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = _schedule(opt, steps)
    t0, loss = time.perf_counter(), None
    for step in range(steps):
        loss = step_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % every == 0:
            log.info("%s step %d/%d loss %.4f (%.0f s)", what, step + 1, steps, loss.item(), time.perf_counter() - t0)
    return loss.item(), round(time.perf_counter() - t0, 1)


def pretrain_text(model, tokenizer, mcfg: EmbeddedModelConfig) -> dict[str, float]:
    """Text-only pretraining of the language model before reading pretraining: the sums, copies and
    look-ups of `_text_lines`, `text_pretrain_batch` lines a step packed into rows of 128 tokens
    (short lines: a step costs a fraction of an image step). The stand-in for the LM pretraining
    a real VLM starts from. Its own held-out facts are measured on a line alone at the start of
    the context, where packing seldom put one (measured: 0.02 of sums right there); the reading
    phase, which keeps the same lines unpacked, reports the figures that count (0.74 after it)."""
    steps = mcfg.text_pretrain_steps
    if steps <= 0 or not (mcfg.arithmetic_pretrain or mcfg.induction_pretrain):
        return {}
    rng = random.Random(f"{mcfg.init_seed}:text-pretrain")
    model.train()
    loss, seconds = _optimise(
        [p for p in model.parameters() if p.requires_grad], mcfg.text_pretrain_lr, steps,
        lambda: model(**_packed_batch(tokenizer, _text_lines(rng, mcfg, mcfg.text_pretrain_batch))).loss,
        "text pretraining", every=100)
    model.eval()
    facts = {"steps": steps, "loss": loss, "seconds": seconds, **_text_facts(model, tokenizer, mcfg)}
    log.info("text pretraining %s", facts)
    return facts


def pretrain_reading(model, processor, mcfg: EmbeddedModelConfig) -> dict[str, float]:
    """Train `model`'s projector and language model in place to read scenes (vision tower frozen)."""
    if mcfg.reading_pretrain_steps <= 0:
        return {}
    tower = model.model.vision_tower
    tower.requires_grad_(False)
    steps = mcfg.reading_pretrain_steps
    rng = random.Random(f"{mcfg.init_seed}:reading-pretrain")
    held_out = _scenes(random.Random(f"{mcfg.init_seed}:reading-held-out"), 48, mcfg.image_size)

    def step_loss() -> torch.Tensor:
        batch = _batch(processor, _scenes(rng, mcfg.reading_pretrain_batch, mcfg.image_size))
        batch.pop("kinds")
        loss = model(**batch).loss
        lines = _text_lines(rng, mcfg)  # and, text only, what an LM knows from its pretraining
        if lines:
            loss = loss + model(**_text_batch(processor.tokenizer, lines)).loss
        return loss

    model.train()
    tower.eval()
    loss, seconds = _optimise([p for p in model.parameters() if p.requires_grad], mcfg.reading_pretrain_lr, steps,
                              step_loss, "reading pretraining", every=50)
    model.eval()
    tower.requires_grad_(True)
    facts = {"steps": steps, "loss": loss, "seconds": seconds,
             "held_out_read_exactly": read_accuracy(model, processor, held_out)}
    facts.update(_text_facts(model, processor.tokenizer, mcfg))
    log.info("reading pretraining %s", facts)
    return facts
