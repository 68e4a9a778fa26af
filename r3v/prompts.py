"""Every prompt template in one place.

Prompts are chat messages (one user turn with the image first); the model's processor renders
them with its own chat template, so nothing here depends on the model family. Targets are the
assistant text the trainer puts labels on.

R3V (Cheng et al., 2025) uses three prompt kinds:
- CoT: question -> rationale ending in `Answer: X`            (L_SFT)
- refine: question + a wrong rationale y- -> a right one y+     (L_REF)
- select: question + N candidate rationales -> `Answer: gold`    (L_SEL)

SQ-LLaVA (Sun et al., 2024) adds a virtual user: in a multi-turn conversation about one image, a
later question may be asked by `[vusr]` instead of the user, and then the question itself is
learnt (L_SQ). Chat templates only know their own roles, so a virtual-user turn is a user turn
whose text starts with the `[vusr]` marker line; what follows the marker is the target. This works
for any chat template that renders a user turn's text verbatim (r3v/trainer/data.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COT_INSTRUCTION = "Think step by step and end with 'Answer: X'."
DIRECT_INSTRUCTION = "Answer directly with 'Answer: X'."
REFINE_INSTRUCTION = "This solution is wrong. Find the mistake and write a correct solution."
SELECT_INSTRUCTION = "Compare the candidates and end with the correct 'Answer: X'."
LETTERS = "ABCDEFGHIJ"


def _user(text: str) -> list[dict]:
    return [user_turn(text, image=True)]


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


# -- SQ-InstructBLIP (Jang et al., 2023): one model in three roles ------------------------

QUESTIONER_INSTRUCTION = "Ask one short question about the image that helps answer the main question."
ANSWERER_INSTRUCTION = "Answer the question briefly from the image."
REASONER_INSTRUCTION = "Use the facts above, think step by step and end with 'Answer: X'."


def questioner(question: str, choices: Sequence[str] | None, asked: Sequence[str]) -> list[dict]:
    """The Questioner: the main question and the sub-questions asked so far -> a new sub-question."""
    earlier = "".join(f"\nAsked: {q}" for q in asked)
    return _user(f"Main question: {format_question(question, choices)}{earlier}\n{QUESTIONER_INSTRUCTION}")


def answerer(sub_question: str) -> list[dict]:
    """The Answerer: one sub-question about the image -> a short answer."""
    return _user(f"{sub_question}\n{ANSWERER_INSTRUCTION}")


def reasoner(question: str, choices: Sequence[str] | None, pairs: Sequence[tuple[str, str]]) -> list[dict]:
    """The Reasoner: the main question and the sub-question/answer pairs -> a rationale and answer."""
    facts = "".join(f"\nQ: {q} A: {a}" for q, a in pairs)
    return _user(f"{format_question(question, choices)}\nFacts:{facts}\n{REASONER_INSTRUCTION}")


VUSR = "[vusr]"
"""The virtual user's marker: the first line of a virtual-user turn."""


def user_turn(text: str, image: bool) -> dict:
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
    return {"role": "user", "content": content}


def vusr_turn(question: str) -> dict:
    """A question asked by the virtual user (never the first turn: the image is in the first).
    `vusr_turn("")` as the last message asks the model for the question (generation_prompt)."""
    return {"role": "user", "content": [{"type": "text", "text": f"{VUSR}\n{question}"}]}


def vusr_prefix() -> str:
    """The text of a virtual-user turn before its question (what asking is conditioned on)."""
    return f"{VUSR}\n"


def assistant_turn(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def question_turn(question: str, choices: Sequence[str] | None, rationale: bool, image: bool) -> dict:
    """A user turn asking `question`, for a rationale (CoT instruction) or a direct answer."""
    instruction = COT_INSTRUCTION if rationale else DIRECT_INSTRUCTION
    return user_turn(f"{format_question(question, choices)}\n{instruction}", image)


ANSWER_PREFIX = "Answer: "  # the labelled answer line of a select target and of a gold rationale


def answer_target(answer: str) -> str:
    return ANSWER_PREFIX + str(answer)


def vocabulary_text() -> list[str]:
    """Fixed prompt text, for training a tokenizer that covers it."""
    return [COT_INSTRUCTION, DIRECT_INSTRUCTION, REFINE_INSTRUCTION, SELECT_INSTRUCTION,
            "Solution:", "Candidates:", "Options:", " ".join(f"({c})" for c in LETTERS)]


# -- rendering (through the model processor's own chat template) ------------------------

_SENTINEL = "\u2063r3v-target\u2063"  # stands in for a virtual-user question, to find where it starts


def render(processor, messages: Sequence[dict], generation_prompt: bool = False) -> str:
    return processor.apply_chat_template(list(messages), add_generation_prompt=generation_prompt, tokenize=False)


def target_prefix(processor, messages: Sequence[dict], index: int) -> str:
    """The rendered conversation up to where message `index`'s learnt (or generated) text starts:
    the generation prompt for an assistant turn, the `[vusr]` marker line for a virtual-user turn."""
    messages = list(messages)
    msg = messages[index]
    if msg["role"] == "assistant":
        return render(processor, messages[:index], generation_prompt=True)
    text = msg["content"][-1]["text"]
    if msg["role"] != "user" or not text.startswith(VUSR):
        raise ValueError(f"turn {index} ({msg['role']}): only assistant and virtual-user turns are generated")
    probe = vusr_turn(_SENTINEL)
    rendered = render(processor, messages[:index] + [probe])
    if _SENTINEL not in rendered:
        raise ValueError("the chat template does not render a user turn's text verbatim; virtual-user turns need it")
    return rendered[:rendered.index(_SENTINEL)]


def generation_prompt(processor, messages: Sequence[dict]) -> str:
    """The prompt a completion continues: an assistant turn after `messages`, or, when the last
    message is an open virtual-user turn (`vusr_turn("")`), that turn's question."""
    last = messages[-1]
    if last["role"] == "user" and last["content"][-1].get("text") == vusr_prefix():
        return target_prefix(processor, messages, len(messages) - 1)
    return render(processor, messages, generation_prompt=True)


@dataclass(frozen=True)
class Example:
    """A training example: a conversation about one image (these prompts) and the turns whose text is
    learnt (r3v/trainer/data.py renders it and puts labels on those turns only)."""

    kind: str  # the loss term its targets feed (r3v.objective.TERM_NAMES: sft | refine | select | sq)
    image: bytes
    messages: tuple  # prompt messages; for a multi-turn sample, the whole conversation
    target: str = ""  # single-turn: the assistant text to learn, appended after `messages`
    targets: tuple = ()  # multi-turn: (message index, loss kind) of each turn whose text is learnt

    def conversation(self) -> tuple[list[dict], list[tuple[int, str]]]:
        """(all messages, [(index, loss kind)]) with the single-turn target appended as a turn."""
        if self.targets:
            return list(self.messages), list(self.targets)
        return list(self.messages) + [assistant_turn(self.target)], [(len(self.messages), self.kind)]
