"""SQ-InstructBLIP (Jang et al., 2023): Questioner -> Answerer -> Reasoner, one shared model.

For k = 1..K the Questioner samples a sub-question about the image given the main question and
the sub-questions asked so far (an empty or repeated sub-question ends the asking); the Answerer
answers it greedily; then the Reasoner answers the main question from the sub-question/answer
pairs, ending in `Answer: X` like a CoT rationale, so a chain is judged like one. Every stage is
one batched `generate` call over all the chains of the dataset (the roles are prompts,
r3v/prompts.py). Each chain has its own seed; its Questioner and Reasoner draws derive from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from r3v import prompts
from r3v.config import QARConfig
from r3v.judge import normalize
from r3v.prompts import Example
from r3v.rollout import RolloutRequest, Sampler, SamplingParams, derive_seed


@dataclass(frozen=True)
class Chain:
    pairs: tuple[tuple[str, str], ...]  # (sub-question, answer), in asking order
    text: str  # the Reasoner's rationale
    finished: bool
    prompt_tokens: int  # the Reasoner's prompt
    completion_tokens: int  # all three roles' generated tokens
    seconds: float  # all three roles' share of their batches' time


def sample_chains(sampler: Sampler, questions: Sequence[dict], seeds: Sequence[Sequence[int]],
                  params: SamplingParams, cfg: QARConfig) -> list[list[Chain]]:
    """One chain per seed of each question (`seeds[i]` for `questions[i]`). `params` samples the
    Questioner and the Reasoner (temperature 0: greedy chains); the Answerer is greedy."""
    states = [(qi, seed) for qi, ss in enumerate(seeds) for seed in ss]
    asked: list[list[str]] = [[] for _ in states]
    answered: list[list[str]] = [[] for _ in states]
    tokens, seconds = [0] * len(states), [0.0] * len(states)
    ask = SamplingParams(params.temperature, params.top_p, cfg.question_max_new_tokens, params.stop)
    answer = SamplingParams(0.0, 1.0, cfg.answer_max_new_tokens, params.stop)

    def request(s: int, messages: list[dict], seed: int) -> RolloutRequest:
        q = questions[states[s][0]]
        return RolloutRequest(q["id"], q["image"]["bytes"], tuple(messages), (seed,))

    active = list(range(len(states)))
    for k in range(cfg.max_subquestions):
        if not active:
            break
        outs = sampler.generate([request(s, prompts.questioner(
            questions[states[s][0]]["question"], questions[states[s][0]]["choices"], asked[s]),
            derive_seed(states[s][1], "questioner", k)) for s in active], ask)
        still = []
        for s, (c,) in zip(active, outs):
            tokens[s] += c.completion_tokens
            seconds[s] += c.seconds
            sub = c.text.strip()
            if sub and normalize(sub) not in {normalize(a) for a in asked[s]}:
                asked[s].append(sub)
                still.append(s)
        outs = sampler.generate([request(s, prompts.answerer(asked[s][-1]), 0) for s in still], answer)
        for s, (c,) in zip(still, outs):
            answered[s].append(c.text.strip())
            tokens[s] += c.completion_tokens
            seconds[s] += c.seconds
        active = still
    outs = sampler.generate([request(s, prompts.reasoner(
        questions[states[s][0]]["question"], questions[states[s][0]]["choices"], list(zip(asked[s], answered[s]))),
        derive_seed(states[s][1], "reasoner")) for s in range(len(states))], params)
    chains: list[list[Chain]] = [[] for _ in questions]
    for s, (c,) in enumerate(outs):
        chains[states[s][0]].append(Chain(tuple(zip(asked[s], answered[s])), c.text, c.finished, c.prompt_tokens,
                                          tokens[s] + c.completion_tokens, seconds[s] + c.seconds))
    return chains


def role_examples(question: dict, pairs: Sequence[dict], rationale: str):
    """Training examples of a positive chain: each Questioner and Answerer turn, and the Reasoner."""

    image, q, choices = question["image"]["bytes"], question["question"], question["choices"]
    out = []
    for k, p in enumerate(pairs):
        out.append(Example("sft", image, tuple(prompts.questioner(q, choices, [x["question"] for x in pairs[:k]])),
                           p["question"]))
        out.append(Example("sft", image, tuple(prompts.answerer(p["question"])), p["answer"]))
    out.append(Example("sft", image, tuple(prompts.reasoner(q, choices, [(p["question"], p["answer"]) for p in pairs])),
                       rationale))
    return out
