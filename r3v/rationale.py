"""What a rationale on the embedded benchmark states, checked against its scene: its reading of
the scene (`Table: red 3, blue 7.`), its equations (`35 + red 3 = 38`), and whether it is a
rationale at all. The judge step uses these (`judge_checking_reading`, `is_rationale`: a positive is
a rationale); r3v/analysis/error_kinds.py classifies errors with the same checks.

The embedded benchmark keeps each scene's ground truth in the question's metadata, and its gold
rationales read the scene first ("Objects: …." / "Bars: red 30, …." / "Table: red 3, ….") before
any arithmetic.
"""

from __future__ import annotations

import json
import re

from r3v.judge import Verdict, judge_for_question, reasoning_before_answer

_READING = {"clevr_math": ("Objects", "objects"), "chart": ("Bars", "bars"), "table": ("Table", "table")}
_TERM = r"(?:[a-z]+ )?-?\d+"  # a number, optionally after the name it was read from: `blue 70`
_CHAIN = re.compile(rf"((?:{_TERM} [-+] )+{_TERM}) = (-?\d+)")


def reading_items(text: str, family: str) -> list[str] | None:
    """The items of a rationale's reading of the scene (`Bars: red 3, blue 7.` -> ["red 3",
    "blue 7"]), or None when it has none."""
    m = re.search(rf"{_READING[family][0]}: (.*?)\.(?:\s|$)", text or "")
    return [x.strip() for x in m.group(1).split(",") if x.strip()] if m else None


def _named(question: str, names) -> list[str]:
    return [n for n in names if re.search(rf"\b{n}s?\b", question)]


def reading_is_right(text: str, meta: dict, question: str = "") -> bool | None:
    """Does the rationale read the scene right where the question needs it? None: nothing to
    check against. Only what the question asks about counts: for a chain over the red and blue bars
    a misread yellow bar does not make a right answer lucky; with no item named every item
    counts. For shapes, the total and the count of each colour the question subtracts (the
    shapes of the objects never change the answer)."""
    family = meta.get("family")
    if family not in _READING or _READING[family][1] not in meta:
        return None
    items = reading_items(text, family)
    if items is None:
        return False
    truth = meta[_READING[family][1]]
    if family == "clevr_math":  # the total, and the count of each colour a step subtracts
        ok = len(items) == len(truth)
        for colour in re.findall(r"Subtract all (\w+) objects", question):
            ok = ok and sum(colour in x.split() for x in items) == sum(colour in x.split() for x in truth)
        return ok
    read: dict[str, int | None] = {}
    for x in items:  # a name read twice with two values is read wrong
        name, _, value = x.rpartition(" ")
        v = int(value) if value.lstrip("-").isdigit() else None
        read[name] = v if read.get(name, v) == v else None
    relevant = _named(question, list(truth)) or list(truth)
    return all(read.get(c) == truth[c] for c in relevant)


def is_rationale(text: str | None, question: dict, min_words: int = 3) -> bool:
    """A positive is a rationale: the output holds reasoning before its answer (at least
    `min_words` words, `r3v.judge.reasoning_before_answer`), and on the embedded benchmark (a
    question whose metadata names its family) it reads the scene (`Table: …`) and writes an
    equation before `Answer:` — what every gold rationale does. A bare `Answer: 12` is none."""
    if not reasoning_before_answer(text, min_words):
        return False
    meta = question.get("metadata") or "{}"
    family = (json.loads(meta) if isinstance(meta, str) else meta).get("family")
    if family not in _READING:
        return True
    before = text.rsplit("Answer:", 1)[0]
    return f"{_READING[family][0]}:" in before and _CHAIN.search(before) is not None


def judge_checking_reading(text: str | None, question: dict, tolerance: float = 0.05,
                           relaxed_generic: bool = False) -> tuple[str | None, Verdict]:
    """`judge_for_question`, and a right answer with a wrong reading of the scene is wrong
    (`wrong_reading`): the judge of `judge.check_reading`. Without scene truth, the answer alone."""
    ans, v = judge_for_question(text, question, tolerance, relaxed_generic)
    if v.correct and reading_is_right(text or "", json.loads(question.get("metadata") or "{}"),
                                      question["question"]) is False:
        return ans, Verdict(False, "wrong_reading")
    return ans, v


def arithmetic_is_right(text: str) -> bool:
    """Every written chain `a + b - c = d` (or `red 30 + blue 70 = 100`) in `text` adds up."""
    for m in _CHAIN.finditer(text):
        terms = [t for t in m[1].split(" ") if not t.isalpha()]
        value = int(terms[0])
        for op, y in zip(terms[1::2], terms[2::2]):
            value += int(y) if op == "+" else -int(y)
        if value != int(m[2]):
            return False
    return True


def steps_are_right(text: str, meta: dict) -> bool | None:
    """Are the rationale's intermediate results (each `... = N`, in order) the gold chain's
    (`results` in the metadata)? None: no gold chain kept."""
    gold = meta.get("results")
    if not isinstance(gold, list):
        return None
    return [int(m[2]) for m in _CHAIN.finditer(text)] == gold
