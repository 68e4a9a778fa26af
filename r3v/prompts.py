"""Every prompt template in one place.

Prompts are chat messages (one user turn with the image first); the model's processor renders
them with its own chat template, so nothing here depends on the model family. Targets are the
assistant text the trainer puts labels on.

R3V (Cheng et al., 2025) uses three prompt kinds:
- CoT: question -> rationale ending in `Answer: X`            (L_SFT)
- refine: question + a wrong rationale y- -> a right one y+     (L_REF)
- select: question + N candidate rationales -> `Answer: gold`    (L_SEL)
"""

from __future__ import annotations

from collections.abc import Sequence

COT_INSTRUCTION = "Think step by step and end with 'Answer: X'."
DIRECT_INSTRUCTION = "Answer directly with 'Answer: X'."
REFINE_INSTRUCTION = "This solution is wrong. Find the mistake and write a correct solution."
SELECT_INSTRUCTION = "Compare the candidates and end with the correct 'Answer: X'."
LETTERS = "ABCDEFGHIJ"


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def format_question(question: str, choices: Sequence[str] | None = None) -> str:
    if not choices:
        return question
    opts = " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{question}\nOptions: {opts}"


def cot(question: str, choices: Sequence[str] | None = None) -> list[dict]:
    return _user(f"{format_question(question, choices)}\n{COT_INSTRUCTION}")


def direct(question: str, choices: Sequence[str] | None = None) -> list[dict]:
    return _user(f"{format_question(question, choices)}\n{DIRECT_INSTRUCTION}")


def refine(question: str, wrong_rationale: str, choices: Sequence[str] | None = None) -> list[dict]:
    return _user(f"{format_question(question, choices)}\nSolution: {wrong_rationale}\n{REFINE_INSTRUCTION}")


def select(question: str, candidates: Sequence[str], choices: Sequence[str] | None = None) -> list[dict]:
    lines = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(candidates))
    return _user(f"{format_question(question, choices)}\nCandidates:\n{lines}\n{SELECT_INSTRUCTION}")


def answer_target(answer: str) -> str:
    return f"Answer: {answer}"


def vocabulary_text() -> list[str]:
    """Fixed prompt text, for training a tokenizer that covers it."""
    return [COT_INSTRUCTION, DIRECT_INSTRUCTION, REFINE_INSTRUCTION, SELECT_INSTRUCTION,
            "Solution:", "Candidates:", "Options:", " ".join(f"({c})" for c in LETTERS)]
