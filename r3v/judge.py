"""Answer extraction and correctness: pure functions.

`extract_answer(text)` finds the final answer, trying in order:
  1. the last `Answer: X` (case-insensitive), X up to the end of its line;
  2. the last `the answer is X`;
  3. the last `\\boxed{X}`.
Anything else is unparsed (None). Models are trained to end with `Answer: X`; the fallbacks
cover real checkpoints prompted zero-shot.

`judge(pred, gold, choices)` returns a `Verdict(correct, reason)`:
  - `unparsed`  : no answer could be extracted -> wrong. Never random credit.
  - `choice`    : multiple choice; the prediction names the gold option by letter or by its text.
  - `bad_choice`: multiple choice; the prediction is a letter out of range or no option -> wrong.
  - `numeric`   : both are numbers and within the relative tolerance (ChartQA's relaxed accuracy,
                  5%), or equal when the question's answer type is integer (counts);
                  `%`, `$` and thousands separators are ignored.
  - `exact`     : normalised (case, surrounding punctuation, whitespace) strings are equal.
  - `mismatch`  : none of the above.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

LETTERS = "ABCDEFGHIJ"
_ANSWER = re.compile(r"answer\s*:\s*(.+)", re.IGNORECASE)
_ANSWER_IS = re.compile(r"the answer is\s*:?\s*(.+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$", re.IGNORECASE)
_LETTER = re.compile(r"^\(?([A-J])\)?(?:[.:)]|\s|$)")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def _clean(ans: str) -> str | None:
    ans = ans.strip().strip("*").strip()
    ans = re.sub(r"[.。;,]+$", "", ans).strip()
    return ans or None


def extract_answer(text: str | None) -> str | None:
    """The final answer in `text`, or None when it has none (see module docstring for the order)."""
    if not text:
        return None
    for rx in (_ANSWER, _ANSWER_IS):
        hits = rx.findall(text)
        if hits:
            first_line = hits[-1].splitlines()[0] if hits[-1].strip() else ""
            return _clean(first_line)
    hits = _BOXED.findall(text)
    return _clean(hits[-1]) if hits else None


def normalize(s: str) -> str:
    s = s.strip().lower()
    s = re.sub(r"\s+", " ", s)
    return s.strip(" .,;:!?\"'`")


def to_number(s: str) -> float | None:
    t = normalize(s).replace(",", "").replace("$", "").rstrip("%").strip()
    if _NUMBER.match(t):
        return float(t)
    frac = re.match(r"^([-+]?\d+)\s*/\s*(\d+)$", t)
    if frac and int(frac.group(2)) != 0:
        return int(frac.group(1)) / int(frac.group(2))
    return None


def numbers_match(pred: float, gold: float, tolerance: float) -> bool:
    """ChartQA's relaxed accuracy: within `tolerance` of the gold value, relatively (exact at 0)."""
    if gold == 0:
        return pred == 0
    return abs(pred - gold) <= tolerance * abs(gold)


def choice_index(pred: str, choices: Sequence[str]) -> int | None:
    """Index of the option `pred` names (by letter, `(B)`, or by its text), else None."""
    m = _LETTER.match(pred.strip())
    if m:
        i = LETTERS.index(m.group(1))
        return i if i < len(choices) else None
    norm = normalize(pred)
    for i, c in enumerate(choices):
        if normalize(c) == norm:
            return i
    return None


def judge(pred: str | None, gold: str, choices: Sequence[str] | None = None,
          tolerance: float = 0.05, integer: bool = False) -> Verdict:
    """Is `pred` (an extracted answer) right? `integer=True` forces exact integer matching."""
    if pred is None or not pred.strip():
        return Verdict(False, "unparsed")
    if choices:
        gi = choice_index(gold, choices)
        pi = choice_index(pred, choices)
        if pi is None:
            return Verdict(False, "bad_choice")
        return Verdict(gi is not None and pi == gi, "choice" if pi == gi else "mismatch")
    pn, gn = to_number(pred), to_number(gold)
    if pn is not None and gn is not None:
        ok = pn == gn if integer else numbers_match(pn, gn, tolerance)
        return Verdict(ok, "numeric" if ok else "mismatch")
    ok = normalize(pred) == normalize(gold)
    return Verdict(ok, "exact" if ok else "mismatch")


def judge_text(text: str | None, gold: str, choices: Sequence[str] | None = None,
               tolerance: float = 0.05, integer: bool = False) -> tuple[str | None, Verdict]:
    """Extract then judge: (extracted answer, verdict)."""
    pred = extract_answer(text)
    return pred, judge(pred, gold, choices, tolerance, integer)


def tabmwp_normalize(text: str, unit: str | None) -> str:
    """TabMWP's answer normalisation: strip a leading `$` and trailing `.,/`, drop the unit; a number
    loses its thousands separators, a fraction becomes its value, and a value is rounded to 3
    places and printed without trailing zeros (`1,000` -> `1000`, `3/4` -> `0.75`, `5.50` -> `5.5`).
    Unlike TabMWP's script the unit is dropped before the number test, so `5.50 dollars` is 5.5."""
    t = text.strip()
    if unit:
        t = t.replace(unit, "").strip()
    t = re.sub(r"^\$", "", t).rstrip(".,/").strip()
    if re.fullmatch(r"[-+]?[\d,./]+", t):
        n = t.replace(",", "")
        try:
            if re.fullmatch(r"[-+]?\d+", n):
                return str(int(n))
            if "/" in n:
                num, den = n.split("/", 1)
                value = round(float(num) / float(den), 3)
            else:
                value = round(float(n), 3)
        except (ValueError, ZeroDivisionError):
            return t
        return re.sub(r"\.0+$", "", str(value))
    return t


def judge_tabmwp(pred: str | None, gold: str, unit: str | None) -> Verdict:
    """TabMWP's free-text scoring: normalised answers equal, case-insensitively."""
    if pred is None or not pred.strip():
        return Verdict(False, "unparsed")
    ok = tabmwp_normalize(pred, unit).lower() == tabmwp_normalize(gold, unit).lower()
    return Verdict(ok, "exact" if ok else "mismatch")


def judge_for_question(text: str | None, question: dict, tolerance: float = 0.05) -> tuple[str | None, Verdict]:
    """`judge_text` against a canonical question row, with the scorer its metadata names:
    `answer_type: integer` (exact counts: CLEVR-Math), `scorer: relaxed` (ChartQA's relaxed
    accuracy: 5% whatever `tolerance` is), `scorer: tabmwp` (TabMWP's normalisation for free-text
    answers; its multiple choice is judged like any other)."""
    meta = json.loads(question.get("metadata") or "{}")
    scorer = meta.get("scorer")
    if scorer == "tabmwp" and not question["choices"]:
        pred = extract_answer(text)
        return pred, judge_tabmwp(pred, question["answer"], meta.get("unit"))
    if scorer == "relaxed":
        tolerance = 0.05
    return judge_text(text, question["answer"], question["choices"], tolerance, meta.get("answer_type") == "integer")


def answer_key(pred: str, question: dict) -> str:
    """What two answers to `question` share when they say the same thing (majority voting): the
    option for multiple choice (letter or text), the number for numeric answers (`1,000` = `1000`),
    TabMWP's normalisation under its scorer, else the normalised text."""
    if question.get("choices"):
        i = choice_index(pred, question["choices"])
        return f"choice:{i}" if i is not None else normalize(pred)
    meta = json.loads(question.get("metadata") or "{}")
    if meta.get("scorer") == "tabmwp":
        return tabmwp_normalize(pred, meta.get("unit")).lower()
    n = to_number(pred)
    return f"number:{n!r}" if n is not None else normalize(pred)


def shuffle_verdicts(rows: list[dict], seed: str) -> None:
    """Permute the verdicts (`correct`, `judge_reason`) of judged rows among them, in place and
    seeded: the canary of `judge.shuffle_labels`. The count of positives is unchanged; which
    rationales are called positive no longer depends on what they say."""
    import random

    verdicts = [(r["correct"], r["judge_reason"]) for r in rows]
    random.Random(seed).shuffle(verdicts)
    for r, (correct, reason) in zip(rows, verdicts):
        r.update(correct=correct, judge_reason=reason)
