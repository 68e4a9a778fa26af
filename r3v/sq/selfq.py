"""SQ-LLaVA's visual self-questioning (Sun et al., ECCV 2024) as part of the R3V loop.

A self-questioning sample is a multi-turn conversation about one image: the questions a dataset
asks about that image, packed `sq.max_turns` at a time. The first turn carries the image and is
always the user's. Each later turn is switched to the virtual user `[vusr]` with probability
`sq.delta` (a seeded draw per question and iteration, stored in the set so it can be inspected);
a switched turn's question tokens and its end of turn are targets of L_SQ. Answers are targets of
L_SFT when they are known to be right: a positive rationale from the pool (the SFT set's pick) or,
with `sq.unsolved_answers`, the gold `Answer: X`; otherwise the gold answer is only context. So a
question that has no positive rationale yet still teaches asking.

`ask` samples questions from the virtual-user role: given an image, one of its questions and the
model's own answer, what would the virtual user ask next.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from r3v import prompts
from r3v.config import SelfQuestioningConfig
from r3v.judge import normalize
from r3v.prompts import Example
from r3v.rollout import RolloutRequest, Sampler, SamplingParams, derive_seed, sample_seeds


def switched(run_seed: int, iteration: int, question_id: str, delta: float) -> bool:
    """Whether the turn of `question_id` is asked by the virtual user at `iteration` (P = delta)."""
    return derive_seed(run_seed, "sq", iteration, question_id) / float(1 << 63) < delta


def pack(items: Sequence[dict], max_turns: int) -> list[list[dict]]:
    """Group `items` ({question_id, image_key, ...}) by image, in first-seen order, and cut each
    group into near-equal chunks of at most `max_turns` (an image with one question gives none:
    a single turn has nothing to switch)."""
    groups: dict[str, list[dict]] = {}
    for it in items:
        groups.setdefault(it["image_key"], []).append(it)
    out = []
    for group in groups.values():
        if len(group) < 2:
            continue
        k = math.ceil(len(group) / max_turns)
        size, extra = divmod(len(group), k)
        start = 0
        for c in range(k):
            n = size + (c < extra)
            out.append(group[start:start + n])
            start += n
    return out


def sq_rows(items: Iterable[dict], gold: dict[str, str], iteration: int, run_seed: int,
            cfg: SelfQuestioningConfig) -> list[dict]:
    """Set rows (SET_SCHEMA, kind=sq) from `items` ({question_id, image_key, rationale or None,
    source_ids}); `gold`: question id -> gold answer. Samples with nothing to learn are left out."""
    rows = []
    for chunk in pack(list(items), cfg.max_turns):
        turns, learnt = [], False
        for t, it in enumerate(chunk):
            vusr = t > 0 and switched(run_seed, iteration, it["question_id"], cfg.delta)
            if it.get("rationale"):
                answer, kind = it["rationale"], "rationale"
            else:
                answer, kind = prompts.answer_target(gold[it["question_id"]]), (
                    "gold" if cfg.unsolved_answers else "context")
            turns.append(dict(question_id=it["question_id"], asked_by="vusr" if vusr else "user",
                              answer=answer, answer_kind=kind))
            learnt |= vusr or kind != "context"
        if learnt:
            first = chunk[0]["question_id"]
            rows.append(dict(example_id=f"sq#{first}", iteration=iteration, kind="sq", question_id=first,
                             negative=None, candidates=None, candidate_correct=None, target=None,
                             source_ids=[s for it in chunk for s in it.get("source_ids") or []], turns=turns))
    return rows


def build_sq_set(store, iteration: int, run_seed: int, cfg: SelfQuestioningConfig) -> list[dict]:
    """The self-questioning set of `iteration` from the pool up to it (view `sq_questions`)."""
    con = store.connect(upto=iteration, seed=run_seed)
    try:
        items = con.sql("SELECT * FROM sq_questions ORDER BY question_id").to_arrow_table().to_pylist()
        gold = dict(con.sql("SELECT id, answer FROM questions WHERE split = 'train'").fetchall())
    finally:
        con.close()
    if not pack(items, cfg.max_turns):
        raise ValueError("sq.enabled: no train image has two or more questions, so there is nothing to "
                         "self-question (set data.embedded.questions_per_image > 1, or use data with "
                         "several questions per image)")
    return sq_rows(items, gold, iteration, run_seed, cfg)


def image_key(q: dict) -> str:
    img = q["image"]
    return hashlib.md5(img["bytes"]).hexdigest() if img.get("bytes") is not None else img["path"]


def seed_sq_examples(questions: Sequence[dict], run_seed: int, cfg: SelfQuestioningConfig) -> list[Example]:
    """Self-questioning samples of the seed split (its gold rationales as answers), iteration 0."""
    items = [dict(question_id=q["id"], image_key=image_key(q), rationale=q.get("rationale"), source_ids=[])
             for q in questions]
    rows = sq_rows(items, {q["id"]: q["answer"] for q in questions}, 0, run_seed, cfg)
    return examples_from_sq_rows(rows, {q["id"]: q for q in questions})


def conversation(turns: Sequence[dict], questions: dict[str, dict]) -> tuple[list[dict], list[tuple[int, str]]]:
    """(chat messages, [(message index, loss kind)]) of one packed sample's turns (SQ_TURN rows)."""
    messages, targets = [], []
    for t, turn in enumerate(turns):
        q = questions[turn["question_id"]]
        if turn["asked_by"] == "vusr":
            if t == 0:
                raise ValueError(f"sq sample of {turn['question_id']}: the first turn carries the image and "
                                 "cannot be the virtual user's")
            targets.append((len(messages), "sq"))
            messages.append(prompts.vusr_turn(prompts.format_question(q["question"], q["choices"])))
        else:
            messages.append(prompts.question_turn(q["question"], q["choices"], turn["answer_kind"] == "rationale",
                                                  image=t == 0))
        if turn["answer_kind"] != "context":
            targets.append((len(messages), "sft"))
        messages.append(prompts.assistant_turn(turn["answer"]))
    return messages, targets


def examples_from_sq_rows(rows: Iterable[dict], questions: dict[str, dict]) -> list[Example]:
    out = []
    for r in rows:
        messages, targets = conversation(r["turns"], questions)
        image = questions[r["turns"][0]["question_id"]]["image"]["bytes"]
        out.append(Example("sq", image, tuple(messages), targets=tuple(targets)))
    return out


def ask(sampler: Sampler, questions: Sequence[dict], n: int, params: SamplingParams, run_seed: int,
        iteration: int, answer_params: SamplingParams | None = None) -> list[dict]:
    """Self-generated questions: for each question's image, the model answers the question
    (greedily, a direct answer), then samples `n` questions as the virtual user.

    Returns rows {question_id, index, seed, context_answer, asked, finished, novel} (ASK_SCHEMA
    without iteration) where `novel` says the asked question is none of the dataset's questions
    about that image (those in `questions`).
    """
    greedy = answer_params or SamplingParams(0.0, 1.0, 32, params.stop)
    first = [RolloutRequest(q["id"], q["image"]["bytes"], tuple(prompts.direct(q["question"], q["choices"])), (0,))
             for q in questions]
    answers = [outs[0].text for outs in sampler.generate(first, greedy)]
    asks = [RolloutRequest(q["id"], q["image"]["bytes"], tuple(ask_messages(q, a)),
                           sample_seeds(run_seed, iteration, q["id"], n, tag="ask"))
            for q, a in zip(questions, answers)]
    by_image: dict[str, set[str]] = {}
    for q in questions:
        by_image.setdefault(image_key(q), set()).add(normalize(prompts.format_question(q["question"], q["choices"])))
    rows = []
    for q, a, req, outs in zip(questions, answers, asks, sampler.generate(asks, params)):
        for i, c in enumerate(outs):
            rows.append(dict(question_id=q["id"], index=i, seed=req.seeds[i], context_answer=a, asked=c.text,
                             finished=c.finished, novel=normalize(c.text) not in by_image[image_key(q)]))
    return rows


def ask_messages(q: dict, answer: str) -> list[dict]:
    """The conversation a question is asked in: the user's question with the image, the model's
    answer, then an open virtual-user turn (its text is cut at the marker by the caller's template)."""
    return [prompts.question_turn(q["question"], q["choices"], rationale=False, image=True),
            prompts.assistant_turn(answer), prompts.vusr_turn("")]
