"""The judge: what a model's output answers, and whether that is the gold answer. Pure functions.

Every verdict becomes a training label (a right rationale judged wrong is "refined" away; a hedge
judged right is imitated), so the rules are strict where a guess could be credited and lenient
only about how a single, unambiguous answer is written. They are written for the shapes real
VLM outputs take, not for one model's format; `tests/data/judge_cases.jsonl` is the labelled
corpus they are measured on (`r3v judge-check FILE` measures them on yours).

## 1. Where the answer is (`extract_answer`), in this order

Only the output's last `TAIL` characters are read (a final answer is at the end; a 10 MB output
costs no more than a short one).

1. **An explicit marker, the last one in the output wins**: `Answer: X`, `Final answer: X`,
   `the (final/correct) answer is X`, `the correct option/choice is X`, `\\boxed{X}` (nested
   braces allowed), and GeoQA's Chinese markers `答案：X`, `答案是X`, `故选X`, `选：X`. Markdown
   around the marker (`**Answer:**`) is allowed. X runs to the end of the marker's line; when the
   line is empty after the marker, X is the next non-empty line (`Answer:\\n5`). Reason: models
   trained or prompted to state their answer do so with one of these, after their reasoning.
   Reasoning models' `<answer>X</answer>` tag is a marker too (the last tag's X).
   A marker whose span names no value and no option letter (`The answer is the object that
   rolls. A sphere rolls, so B`) yields to a conclusion after it (rules 3-5), which then wins.
2. **Else the last line, when it is one short sentence** (at most 30 words, no sentence boundary
   inside): a bare final answer (`5`, `B`, `(B) 40°`, `Forty-nine`, `24 students`) or a one-line
   answer (`There are 5 objects left.`). Reason: a zero-shot checkpoint often answers in one line.
3. **Else the last sentence, when it concludes** (starts with so / therefore / thus / hence /
   finally / in total / overall). Reason: `... so the total is 7.` ends a rationale with its answer.
4. **Else the value after a result verb ending the last sentence** (`... The total she sold is
   27.`, `... gives 5`; not `is not 3`, not a bare `is`). Reason: free text states its result
   last, without a marker.
5. **Else the last sentence's concluding clause** (`..., ∠2 = 40°, so B`).

Anything else is unparsed: a rationale cut off before its conclusion is not read for a number
one of its middle sentences happens to contain, nor an answer cut off mid-expression
(`Answer: 9 -`, `The bar for 2017 is`).

**Working after a marker** (`Answer: We add 12 and 15 to get 27.`): a span that starts with a word
and holds two or more numbers is read for the value after its last result verb (`is`, `are`,
`equals`, `gives`, `get`, `makes`, `leaves`, `results in`, ...). The answer span is then cut
before its explanation (`because`, `since`, `which`, `as`, `;`, a new sentence), so
`Answer: B, because C is smaller` answers B.

**Two final answers that disagree are a hedge.** Every `Answer:` / `Final answer:` line,
`<answer>` tag and `\\boxed{}` is a final answer (`final_answers`); when two of them read as
different options or values under the question's scorer, the output is `ambiguous` however the
last one reads (`Answer: 5 ... Wait ... Answer: 4`). Agreeing repeats (`Answer: B` ...
`Answer: (B) 40°`) are one answer.

## 2. What the answer means (`read`), by the question's scorer

- **Multiple choice** (GeoQA, M3CoT, any question with options): the options the answer names,
  by letter (`B`, `(B)`, `B.`, `option B`, `(b)`; a lowercase letter only when it stands alone),
  by the option's text (LaTeX read as the option's: `4\\sqrt{3}` and `4√{3} cm` name option
  `4√3`), by the option's value (`40°` or `40` for option `40°`), or, when nothing else names
  one, by a distinctive part of exactly one option's text that ends a short answer (`sphere`,
  `The object that rolls is the sphere.` for options `the red cube` / `the blue sphere`; a part
  several options share names none). The gold may also be a 0-based option index (`1` for B),
  as dataset dumps that store `label: 1` give it, when it names no option otherwise. Exactly one
  option named: that option. Two different options named (`B or C`, `(B) (C) (D)`, a letter with
  another option's text): **ambiguous, never credit**. None: `bad_choice` (a letter out of range
  is never a random pick).
- **Numbers**: one value, written any common way: `-3` / `−3`, `.5`, `1,000` / `1 000`, `3 1/2`,
  `7/2`, `\\frac{7}{2}`, `57%` (= 0.57, and 57: a percentage may be given for either), `$12.50`,
  `24 students`, `1.2e3`, `1.2 × 10^3`, `1_000_000`, number words (`five`, `Forty-nine`,
  `one hundred and five`), `no objects` (0), the value after the last `=` of an equation
  (`5 × 3 = 15`); a parenthesised aside is ignored when a value stands outside it (`15 (5 × 3)`),
  and so is the year a value is about (`78 in 2016`, `the gap between 2010 and 2020 is 15`).
  A **decimal comma** (`3,5`, `12,75`: one or two digits after the comma; `1.250,5`) is a
  decimal point everywhere but TabMWP, whose tables are US-formatted (there `3,5` is two
  values); three digits after a comma (`1,250`) are a thousands group everywhere. Two different
  values (`5 or 6`, `between 5 and 6`): ambiguous. The same value three or more times (`3 3 3 3`,
  `B B B B`): `degenerate`, a loop, never credited.
- **Text** (yes/no, names, colours): the normalised answer (case, markdown, punctuation, articles)
  equals the gold's, or the answer is one sentence that ends with the gold (`The tallest bar is
  blue.`); a hedge (`blue or red`) is ambiguous.

## 3. Whether it is right (`judge`, `judge_for_question`), per benchmark

| scorer (question metadata) | benchmark | rule | official script, and where we differ |
|---|---|---|---|
| `answer_type: integer` | CLEVR-Math, embedded | exact integer | CLEVR-Math compares integers; we also read number words |
| `scorer: relaxed` | ChartQA | within 5%, except **years** exact | ChartQA's `relaxed_correctness` gives 5% to every number; a year (gold a 4-digit integer 1000-2100 written without separators, or a question asking "which/what year") is a label, and 2000 for 2019 is wrong |
| `scorer: tabmwp` | TabMWP | numbers: equal after rounding to 3 places (TabMWP's normalisation); text: `tabmwp_normalize` equal; times as clock times (`7:30 P.M.` = `7:30 pm` = `7:30 p.m.`) | TabMWP extracts with its own "The answer is" pattern and compares strings; we read any shape above, then compare as its script normalises |
| options present | GeoQA, M3CoT, TabMWP's multi-choice | the named option is the gold option | their scripts take the first letter found (a hedge then counts its first letter); we make a hedge ambiguous |
| none of these | generic data | numbers **exact** (`judge.relaxed_generic: true`: within `judge.relaxed_tolerance`; or give the rows `scorer: relaxed`); text as above | - |

Verdict reasons: `unparsed` (no answer found), `ambiguous` (a hedge), `degenerate` (a loop), `bad_choice`, `choice`,
`numeric`, `exact`, `mismatch`. Only `choice`, `numeric` and `exact` are correct. `answer_key`
(majority voting) is the answer's meaning under the same rules, so maj@N and select@N agree
with the judge about which answers are the same.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

LETTERS = "ABCDEFGHIJ"
TAIL = 4096
"""Characters read from the end of an output."""
RELAXED = 0.05
"""ChartQA's relaxed accuracy: within 5% of the gold value."""

# -- 1. where the answer is ---------------------------------------------------------------------
_CANDIDATE = re.compile(r"answer|correct|答案|选", re.IGNORECASE)
_MARKER = re.compile(  # matched at a candidate ("final answer:" is found at its "answer")
    r"answer\b[\s*_]*(?:\bis\b[\s*_]*[:：]?|[:：=]|-(?=\s))"
    r"|correct\s+(?:option|choice)\s*(?:\bis\b\s*[:：]?|[:：])"
    r"|答案\s*(?:是|为|為|应为|應為)?\s*[:：]?|(?<=故)选\s*[:：]?|选\s*[:：]",
    re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_SENTENCE_END = re.compile(r"[.!?。](?=\s+\S)")
_CONCLUDES = re.compile(r"^(?:so|therefore|thus|hence|finally|in total|overall|in conclusion)\b", re.IGNORECASE)
_CLAUSE = re.compile(r",\s*((?:so|therefore|thus|hence)\b[^,]*)$", re.IGNORECASE)
"""`..., so B`: a concluding clause after the sentence's last comma."""
_RESULT = (r"\b(?:is|are|was|were|equals?|gives?|get|gets|got|makes?|leaves?|leaving|yields?|results?\s+in)\s+"
           r"(?!not\b)(?P<v>(?:about\s+|approximately\s+)?[$€£]?\s*[-−]?\.?\d[^\n]{0,30}?)\s*[.!]?\s*$")
_RESULT_TAIL = re.compile(_RESULT, re.IGNORECASE)
"""`... gives 5.` / `... the total is $10.`: a value stated after a result verb at the end."""
_TWO_NUMBERS = re.compile(r"\d\D+\d")
_SO = re.compile(r"\b(?:so|therefore|thus|hence)\b", re.IGNORECASE)
_WORKING = re.compile(r"^[*_\s]*[A-Za-z]{2,}")
_VALUE_OR_LETTER = re.compile(r"\d|(?<![A-Za-z])\(?[A-J]\)?(?![A-Za-z])|[一二三四五六七八九十零]")
_CUT = re.compile(r",?\s*\b(?:because|since)\b|,\s*which\b|\swhich\b|,?\s+as\s|;|\n|\.\s+(?=\S)", re.IGNORECASE)
_WRAP = " \t*_`'\"“”‘’:.,;!?。，：、$"


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def _decode(text) -> str | None:
    if type(text) is str:
        return text if len(text) <= TAIL else text[-TAIL:]
    if text is None:
        return None
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return text[-TAIL:]


_LEAD_DOT = re.compile(r"[\s*_`'\"“‘$]*(?=\.\d)")


def _strip(s: str) -> str:
    if not s or (s[0] not in _WRAP and s[-1] not in _WRAP):
        return s
    lead = _LEAD_DOT.match(s) if "." in s else None  # `.5` keeps its point
    s = s[lead.end():].rstrip(_WRAP) if lead else s.strip(_WRAP)
    while s.startswith(("**", "__")) or s.endswith(("**", "__")):
        s = s.strip("*_ ").strip(_WRAP)
    return s


def _after_marker(text: str, end: int) -> str:
    line_end = text.find("\n", end)
    span = text[end:] if line_end < 0 else text[end:line_end]
    if span.strip(_WRAP):
        return span
    for line in text[end:].split("\n")[1:]:  # `Answer:` then the value on the next line
        if line.strip(_WRAP):
            return line
    return ""


def _last_marker(text: str) -> re.Match | None:
    """The last explicit answer marker: candidates are found by a cheap scan, then checked from
    the end with the full pattern (the scan is what runs on every rollout)."""
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer: positions would shift
        starts = [m.start() for m in _CANDIDATE.finditer(text)]
    else:
        starts = []
        for w in _CANDIDATE_WORDS if not text.isascii() else _CANDIDATE_WORDS[:2]:
            i = low.find(w)
            while i >= 0:
                starts.append(i)
                i = low.find(w, i + 1)
        starts.sort()
    for pos in reversed(starts):
        if pos and text[pos - 1].isalpha() and text[pos].isascii():
            continue  # inside a word ("reanswer")
        m = _MARKER.match(text, pos)
        if m:
            return m
    return None


_CANDIDATE_WORDS = ("answer", "correct", "答案", "选")  # what _CANDIDATE finds, found by str.find


_TRAINED = re.compile(r"(?<![\w*])answer:[ \t]*(-?\d+)\.?\s*\Z", re.IGNORECASE)
"""The shape trained models end in (`... Answer: 12`): read without the general search."""


def extract_answer(text, explicit: bool = False) -> str | None:
    """The answer span of a model output, or None when it has none (module docstring, part 1);
    `explicit`: only an explicit marker's (rule 1), e.g. to see if a gold rationale states its answer."""
    text = _decode(text)
    if not text:
        return None
    tail = max(0, len(text) - 40)
    at = max(text.rfind("nswer", tail), text.rfind("NSWER", tail))
    if at > 0:
        fast = _TRAINED.match(text, at - 1)
        if fast:
            return fast.group(1)
    if not text.strip():
        return None
    span = None
    last = _last_marker(text)
    boxed = None
    if "boxed" in text:
        for b in _BOXED.finditer(text):
            boxed = b
    tag = text.rfind("<answer>") if "</answer>" in text else -1
    if tag >= 0 and (last is None or tag >= last.start()) and (boxed is None or tag >= boxed.start()):
        close = text.find("</answer>", tag)
        span = text[tag + 8:close] if close >= 0 else text[tag + 8:]
    elif boxed is not None and (last is None or boxed.start() >= last.start()):
        span = boxed.group(1)
    elif last is not None:
        span = _after_marker(text, last.end())
        inner = _BOXED.search(span) if "boxed" in span else None
        if inner:
            span = inner.group(1)
        elif not explicit:
            head = _cut(span)
            if not _VALUE_OR_LETTER.search(head):
                # `The answer is the object that rolls. A sphere rolls, so B`: a marker whose span holds
                # no value and no option letter yields to a conclusion after it
                later = _last_line_answer(text[last.end():])
                if later is not None and _VALUE_OR_LETTER.search(later) and _SO.search(later):
                    span = later
            elif head and not _WORKING.match(span.lstrip()):  # the usual case: `Answer: 12`, read once
                return None if head[-1] in _OPEN_ENDS else head
    elif explicit:
        return None
    else:
        span = _last_line_answer(text)
    if span is None:
        return None
    span = span.strip()
    if _WORKING.match(span) and _TWO_NUMBERS.search(span) and not _WORD_RUN.match(span.lstrip("*_ ")):
        # `Answer: We add 12 and 15 to get 27.`: working after the marker, its result at the end
        result = _RESULT_TAIL.search(span)
        if result and re.search(r"\d", span[:result.start()]):
            span = result.group("v")
    span = _cut(span)
    if span[-1:] in _OPEN_ENDS:
        return None  # cut off mid-expression (`Answer: 9 -`): no answer yet
    return span or None


_OPEN_ENDS = frozenset("-+*/=×÷")


_FINAL = re.compile(r"(?<![\w])(?:final\s+)?answer[\s*_]*[:：]|<answer>|\\boxed\s*\{", re.IGNORECASE)


def _several_finals(text: str) -> bool:
    """Could `text` state two final answers? (A cheap count before `final_answers`' scan.)"""
    return text.count("nswer") + text.count("NSWER") + text.count("boxed") >= 2


def final_answers(text) -> list[str]:
    """Every explicitly stated final answer, in order: each `Answer:` / `Final answer:` line's
    value, each `<answer>...</answer>` and each `\\boxed{}`. Two that mean different things are a
    hedge (`judge_for_question`): `Answer: 5 ... Wait ... Answer: 4` is not credited with 4."""
    text = _decode(text)
    if not text or not _several_finals(text):
        return []
    out = []
    found = list(_FINAL.finditer(text))
    for k, m in enumerate(found):
        tag = m.group(0)
        if tag.startswith("\\"):
            b = _BOXED.match(text, m.start())
            span = b.group(1) if b else ""
        elif tag.lower() == "<answer>":
            close = text.find("</answer>", m.end())
            span = text[m.end():close if close >= 0 else len(text)]
        else:  # an `Answer:` span ends where the next final answer starts (`Answer: 0 Answer: 1`)
            span = _after_marker(text[:found[k + 1].start()] if k + 1 < len(found) else text, m.end())
            inner = _BOXED.search(span) if "boxed" in span else None
            span = inner.group(1) if inner else _cut(span)  # cut as extract_answer cuts its span
        span = _strip(span.strip())
        if span:
            out.append(span)
    return out


_CUT_HINT = re.compile(r"because|since|which|as\s|[;\n]|\.\s", re.IGNORECASE)


def _cut(span: str) -> str:
    """The span before its explanation (`B, because ...`), stripped; a list of letters stays whole."""
    if _CUT_HINT.search(span) and ("." not in span or not _is_choice_list(span)):
        span = _CUT.split(span, maxsplit=1)[0]
    return _strip(span)


def _last_line_answer(text: str) -> str | None:
    """Rules 2-4 of the docstring's part 1: the last line when it is one short sentence, else its
    last sentence when it concludes or states a value after `is`, else its concluding clause."""
    end = len(text)
    while True:  # the last non-empty line, read from the end
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end]
        if _strip(line.strip()):
            break
        if start == 0:
            return None
        end = start - 1
    line = line.strip()
    if (not _SENTENCE_END.search(line) or _LETTER_LINE.match(line)) and len(line.split()) <= 30:
        return line
    parts = _SENTENCE_END.split(line)
    tail = parts[-1].strip() if parts else ""
    if _CONCLUDES.match(tail):
        return tail
    result = _RESULT_TAIL.search(tail)
    if result:
        return result.group("v")
    clause = _CLAUSE.search(tail)
    return clause.group(1) if clause else None


_WORD = re.compile(r"[^\W_]+")


def reasoning_before_answer(text, min_words: int = 3) -> bool:
    """Does the output hold reasoning before its final answer? (A positive is a rationale: a bare
    `Answer: 12`, however right, is not one.) The words (letters or digits) before the last
    explicit answer marker, or before the last line when there is none, must number at least
    `min_words`."""
    text = _decode(text)
    if not text:
        return False
    last = _last_marker(text)
    if last is not None:
        before = text[:last.start()]
    else:
        lines = text.rstrip().rsplit("\n", 1)
        before = lines[0] if len(lines) > 1 else ""
    return len(_WORD.findall(before)) >= min_words


def _is_choice_list(span: str) -> bool:
    """`(B) (C) (D)`: letters one after another (a hedge, kept whole so the reader sees them all)."""
    return len(_LETTER_TOKEN.findall(span)) > 1 and not re.search(r"[a-z]{3,}", span)


# -- 2. what the answer means -------------------------------------------------------------------
_MINUS = str.maketrans({"−": "-", "–": "-", "—": "-", "‒": "-", "﹣": "-", "－": "-", "\u00a0": " ",
                        "\u202f": " ", "\u2009": " ", "×": "*", "·": "*", "÷": "/", "⁄": "/", "∕": "/"})
_LATEX = [(re.compile(r"\\sqrt\s*\{([^{}]*)\}|√\s*\{([^{}]*)\}"), lambda m: "√" + (m[1] if m[1] is not None else m[2])),
          (re.compile(r"\\sqrt\s*(?=\d)"), "√"),
          (re.compile(r"(\d+(?:\.\d+)?)\s*[*x]\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?"), r"\1e\2"),
          (re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}"), r"\1/\2"),
          (re.compile(r"\\(?:text|mathrm|mathbf|textbf)\s*\{([^{}]*)\}"), r"\1"),
          (re.compile(r"\^\s*\{?\\circ\}?|\\circ|\\degree"), "°"), (re.compile(r"\\%"), "%"),
          (re.compile(r"\\[,;! ]|\\left|\\right|[\\$]"), " ")]
_NUM = re.compile(
    r"(?<![\w.])(?P<sign>[-+])?(?:(?P<whole>\d+)\s+(?P<mn>\d+)/(?P<md>\d+)(?![\d/])"
    r"|(?P<fn>\d+)\s*/\s*(?P<fd>\d+)(?![\d/])"
    r"|(?P<int>\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+(?![\d/])|\d{1,3}(?:_\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?P<exp>e[-+]?\d+(?!\w))?(?![\d])"
    r"|(?P<dot>\.\d+))(?!(?:st|nd|rd|th)\b)(?P<pct>\s*(?:%|percent\b))?(?P<scale>\s*(?:k|thousand|m|mn|million|bn|b|billion)\b)?",
    re.IGNORECASE)
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9}
_PARENS = re.compile(r"\([^()]*\)")
_NEGATIVE = re.compile(r"\b(?:minus|negative)\s+(?=\d)", re.IGNORECASE)
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_WORD_RUN = re.compile(r"\b(?:%s)(?:(?:[\s-]+(?:and\s+)?)(?:%s))*\b" % (
    "|".join([*_WORDS, *_TENS, *_SCALES, "none"]), "|".join([*_WORDS, *_TENS, *_SCALES])), re.IGNORECASE)
_NO = re.compile(r"^(?:there\s+(?:are|is)\s+)?no\s+[a-z]+", re.IGNORECASE)
"""`no objects are left`: zero, when no other value is written."""
_YEAR_AFTER = re.compile(r"\s*\b(?:in|for|during|of|since|by|as\s+of|in\s+the\s+year)\s+(?:1\d{3}|20\d{2})\b"
                         r"|\s*\b(?:between|from)\s+(?:1\d{3}|20\d{2})\s+(?:and|to)\s+(?:1\d{3}|20\d{2})\b",
                         re.IGNORECASE)
"""`78 in 2016`, `between 2010 and 2020`: the year a value is about, not a second value."""
_DECIMAL_COMMA = re.compile(r"(?<![\d,.])(\d+),(\d{1,2})(?![\d,])")
"""`3,5` / `12,75`: a decimal comma (a thousands separator has three digits after it)."""
_GROUPED_DOTS = re.compile(r"(?<![\d,.])(\d{1,3}(?:\.\d{3})+),(\d+)(?![\d,.])")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\s*([ap])\.?\s*m\b\.?", re.IGNORECASE)
_HEDGE = re.compile(r"\b(?:or|either|between|maybe|perhaps|possibly)\b|/(?!\d)|\?", re.IGNORECASE)
_LETTER_TOKEN = re.compile(r"(?<![A-Za-z0-9'’])\(?([A-J])\)?(?![A-Za-z0-9'’])")
_LONE_LETTER = re.compile(r"^(?:(?:option|choice)\s+)?[(\[]?([A-Ja-j])[)\]]?[.:)]?$", re.IGNORECASE)
_WORD_AFTER = re.compile(r"\s+(?!(?:or|and|nor|is|was|because|since|as)\b)[a-z]")
_LETTER_LINE = re.compile(r"^[*_\s]*\(?[A-J]\)?[.:)]\s+\S")
_ARTICLES = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_YEAR_Q = re.compile(r"\b(?:which|what|in which|in what)\s+years?\b|\bwhen\b", re.IGNORECASE)


def normalize(s: str) -> str:
    """Lower case, single spaces, markdown and surrounding punctuation off, NFKC (full-width forms)."""
    s = unicodedata.normalize("NFKC", s).strip().lower()
    s = re.sub(r"\s+", " ", s)
    return _strip(s).strip(" .,;:!?\"'`")


def _prep(s: str) -> str:
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s).translate(_MINUS)
    if "\\" in s or "$" in s or "^" in s or "√" in s:
        for rx, sub in _LATEX:
            s = rx.sub(sub, s)
    return s


def _word_number(run: str) -> float | None:
    total, current = 0, 0
    for w in re.split(r"[\s-]+", run.lower()):
        if w == "and":
            continue
        if w == "none":
            return 0.0
        if w in _WORDS:
            current += _WORDS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in _SCALES:
            current = max(current, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, current = total + current, 0
    return float(total + current)


def _values(s: str) -> list[tuple[float, tuple[float, ...]]]:
    """(value, the other values it may mean) of every number in `s`, in order: `57%` may mean
    0.57, `1.5k` 1500 and `1.2 million` 1200000 (or the axis' unit: 1.2)."""
    out = []
    for m in _NUM.finditer(s):
        sign = -1.0 if m["sign"] == "-" else 1.0
        if m["whole"] is not None:
            d = int(m["md"])
            if d == 0:
                continue
            v = int(m["whole"]) + int(m["mn"]) / d
        elif m["fn"] is not None:
            d = int(m["fd"])
            if d == 0:
                continue
            v = int(m["fn"]) / d
        elif m["dot"] is not None:
            v = float(m["dot"])
        else:
            v = float(m["int"].replace(",", "").replace(" ", "").replace("_", "") + (m["frac"] or "") + (m["exp"] or ""))
        v *= sign
        also = (v / 100,) if m["pct"] else ()
        if m["scale"]:
            also += (v * _SCALE[m["scale"].strip().lower()],)
        out.append((v, also))
    return out


def to_number(s: str) -> float | None:
    """The one value `s` states (see the module docstring), or None (no value, or two different)."""
    r = _number(s)
    return r if isinstance(r, float) else None


@lru_cache(maxsize=1 << 16)
def _number(s: str):
    """float, or a tuple of the values it may mean (the first is as written); "ambiguous": two
    different values; None: no number. Cached: answers and golds repeat across samples."""
    s = _prep(s)
    if "=" in s:  # an equation on the answer line: its result
        s = s.rsplit("=", 1)[1]
    if "(" in s:
        outside = _PARENS.sub(" ", s)
        if outside != s and (_NUM.search(outside) or _WORD_RUN.search(outside)):
            s = outside
    if "inus" in s or "egative" in s:
        s = _NEGATIVE.sub("-", s)
    vals = _values(s)
    if not vals:
        vals = [(_word_number(m.group(0)), ()) for m in _WORD_RUN.finditer(s)]
    if not vals:
        return 0.0 if _NO.match(s.strip(" *_")) else None
    if len({v for v, _ in vals}) > 1:
        without_years = _YEAR_AFTER.sub(" ", s)
        if without_years == s:
            return "ambiguous"
        vals = _values(without_years)
        if not vals or len({v for v, _ in vals}) > 1:
            return "ambiguous"
    if len(vals) >= 3:
        return "degenerate"  # `3 3 3 3 3 ...`: a loop, not an answer
    v, also = vals[0]
    also = tuple(a for _, al in vals for a in al)
    return (float(v), *also) if also else float(v)


@lru_cache(maxsize=4096)
def _option_patterns(choices: tuple[str, ...]) -> tuple[tuple[int, re.Pattern], ...]:
    """Each option's text as a whole-phrase pattern (its LaTeX read as the answers' is: `4\\sqrt{3}`
    is `4√3`); an option ending in a digit or symbol may have a unit glued after it (`4√3cm`)."""
    out = []
    for i, c in enumerate(choices):
        t = _ARTICLES.sub("", normalize(_prep(c)))
        if t:
            end = r"(?![\w])" if t[-1].isalpha() else r"(?![\d]|\.\d)"
            out.append((i, re.compile(r"(?<![\w])" + re.escape(t) + end)))
    return tuple(out)


def _option_spans(claim: str, choices: tuple[str, ...]) -> set[int]:
    """Options whose text the claim contains as a whole phrase (the longest of overlapping ones)."""
    low = normalize(claim)
    hits = [(m.start(), m.end(), i) for i, rx in _option_patterns(choices) for m in rx.finditer(low)]
    if len(hits) < 2:
        return {i for _, _, i in hits}
    return {i for s, e, i in hits if not any((s2 <= s and e <= e2) and (e2 - s2) > (e - s) for s2, e2, _ in hits)}


_STOP = frozenset("the a an is are was it its of in on at to and or by for with this that one ones".split())


def _distinctive_option(claim: str, choices: tuple[str, ...]) -> int | None:
    """`sphere` for options `the red cube` / `the blue sphere`: the longest ending of a short answer
    (at most 12 words, no hedge, no `not`) that is a whole-word part of exactly one option's text."""
    words = _ARTICLES.sub("", normalize(claim)).split()
    if not words or len(words) > 12 or _HEDGE.search(claim) or "not" in words:
        return None
    texts = [normalize(_prep(c)) for c in choices]
    for k in range(len(words), 0, -1):
        phrase = " ".join(words[-k:])
        if all(w in _STOP for w in words[-k:]) or sum(ch.isalpha() for ch in phrase) < 3:
            continue
        rx = re.compile(r"(?<![\w])" + re.escape(phrase) + r"(?![\w])")
        hits = [i for i, t in enumerate(texts) if rx.search(t)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            return None  # a part several options share names none of them
    return None


def _choice(claim: str, choices: Sequence[str]) -> tuple[str, int | None]:
    """("choice", i) / ("ambiguous", None) / ("bad_choice", None)."""
    text = _prep(claim).strip()
    lone = _LONE_LETTER.match(_strip(text))
    named: set[int] = set()
    out_of_range = False
    if lone:
        i = LETTERS.index(lone.group(1).upper())
        return ("choice", i) if i < len(choices) else ("bad_choice", None)
    for m in _LETTER_TOKEN.finditer(text):
        letter = m.group(1)
        if letter in "AI" and not m.group(0).startswith("(") and _WORD_AFTER.match(text, m.end()):
            continue  # the article "A" or the pronoun "I", not an option
        i = LETTERS.index(letter)
        if i < len(choices):
            named.add(i)
        else:
            out_of_range = True
    letters = len(named)
    named |= _option_spans(text, tuple(choices))
    if not named:
        value = _number(text)
        if isinstance(value, float | tuple):
            target = value[0] if isinstance(value, tuple) else value
            same = [i for i, c in enumerate(choices) if _same_number(_number(str(c)), target)]
            if len(same) == 1:
                named.add(same[0])
        else:
            part = _distinctive_option(text, tuple(choices))
            if part is not None:
                named.add(part)
    if letters == 1 and len(_LETTER_TOKEN.findall(text)) >= 3 and not re.search(r"[a-z]{2,}", text):
        return "degenerate", None  # `B B B B B ...`: a loop, not an answer
    if len(named) > 1 or (named and _HEDGE.search(text) and out_of_range):
        return "ambiguous", None
    if len(named) == 1:
        return "choice", named.pop()
    return "bad_choice", None


def _gold_option(gold: str, choices: tuple[str, ...]) -> int | None:
    """The gold option: named as an answer would name it (`B`, its text, its value), else a 0-based
    option index (`1` for B), as dataset dumps that store `label: 1` give it."""
    kind, i = _choice(gold, choices)
    if kind == "choice":
        return i
    g = gold.strip()
    return int(g) if g.isdigit() and int(g) < len(choices) else None


def _candidates(r) -> tuple[float, ...]:
    """The values a `_number` result may mean: a percentage is its number or its fraction."""
    return r if isinstance(r, tuple) else (r,) if isinstance(r, float) else ()


def _same_number(r, target: float) -> bool:
    return any(_close(v, target, 0.0) for v in _candidates(r))


def _close(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return False
    if tol > 0 and b != 0:
        return abs(a - b) <= tol * abs(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _text_match(claim: str, gold: str) -> str:
    """"exact" / "ambiguous" / "mismatch" for a text answer."""
    c, g = _ARTICLES.sub("", normalize(claim)), _ARTICLES.sub("", normalize(gold))
    if not g:
        return "mismatch"
    if c == g:
        return "exact"
    if re.search(r"\b(?:or|either|maybe|perhaps|possibly)\b|/", c):
        return "ambiguous"
    if g in ("yes", "no") and re.match(rf"^{g}\b", c):
        return "ambiguous" if re.search(rf"\b{'no' if g == 'yes' else 'yes'}\b", c) else "exact"
    if len(c.split()) <= 30 and re.search(r"(?:^|\s)" + re.escape(g) + "$", c) and not re.search(r"\bnot\b", c):
        return "exact"
    return "mismatch"


def judge(pred: str | None, gold: str, choices: Sequence[str] | None = None,
          tolerance: float = 0.0, integer: bool = False, year_question: bool = False) -> Verdict:
    """Is `pred` (an extracted answer span) the gold answer? `tolerance`: relative, for relaxed
    scoring (0: exact); `integer`: exact integers; `year_question`: years stay exact."""
    if pred is None or not str(pred).strip():
        return Verdict(False, "unparsed")
    return _judge(str(pred), str(gold), tuple(map(str, choices)) if choices else None, tolerance, integer,
                  year_question)


@lru_cache(maxsize=1 << 16)
def _judge(pred: str, gold: str, choices: tuple[str, ...] | None, tolerance: float, integer: bool,
           year_question: bool) -> Verdict:
    """`judge`, cached: a pool's answers and golds repeat (N samples per question, few values)."""
    if choices:
        kind, pi = _choice(pred, choices)
        if kind != "choice":
            return Verdict(False, kind)
        gi = _gold_option(gold, choices)
        return Verdict(gi == pi, "choice" if gi == pi else "mismatch")
    g = _number(gold)
    if isinstance(g, float | tuple):
        p = _number(pred)
        if isinstance(p, str):  # ambiguous, degenerate
            return Verdict(False, p)
        if p is None:
            return Verdict(False, "mismatch")
        if integer or _is_year(gold, year_question):
            tolerance = 0.0
        ok = any(_close(v, gv, tolerance) for v in _candidates(p) for gv in _candidates(g))
        return Verdict(ok, "numeric" if ok else "mismatch")
    kind = _text_match(pred, gold)
    return Verdict(kind == "exact", kind)


@lru_cache(maxsize=4096)
def _asks_year(question: str) -> bool:
    return bool(_YEAR_Q.search(question))


def _is_year(gold: str, year_question: bool) -> bool:
    g = gold.strip()
    return bool(re.fullmatch(r"\d{4}", g)) and (1000 <= int(g) <= 2100) or (year_question and g.isdigit())


def judge_text(text: str | None, gold: str, choices: Sequence[str] | None = None,
               tolerance: float = 0.0, integer: bool = False) -> tuple[str | None, Verdict]:
    """Extract then judge: (answer span, verdict)."""
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


def _clock(m: re.Match) -> str:
    return f"{int(m[1])}:{m[2]} {m[3].lower()}m"


def judge_tabmwp(pred: str | None, gold: str, unit: str | None) -> Verdict:
    """TabMWP's free-text scoring: numbers equal after its rounding to 3 places, else its
    normalised strings equal (case-insensitive), with a one-sentence answer ending in the gold;
    a time (`7:30 P.M.`) equal as a clock time, however a.m./p.m. is written."""
    if pred is None or not pred.strip():
        return Verdict(False, "unparsed")
    return _judge_tabmwp(pred, str(gold), unit)


@lru_cache(maxsize=1 << 16)
def _judge_tabmwp(pred: str, gold: str, unit: str | None) -> Verdict:
    gold_time = _TIME.fullmatch(gold.strip())
    if gold_time:  # `7:30 P.M.` = `7:30 pm` = `7:30 p.m.`; a time without a.m./p.m. is not it
        times = {_clock(m) for m in _TIME.finditer(pred)}
        ok = times == {_clock(gold_time)}
        return Verdict(ok, "exact" if ok else "ambiguous" if len(times) > 1 else "mismatch")
    g = _number(tabmwp_normalize(gold, unit))
    if isinstance(g, float):
        p = _number(pred.replace(unit, " ") if unit else pred)
        if isinstance(p, str):  # ambiguous, degenerate
            return Verdict(False, p)
        ok = any(round(v, 3) == round(g, 3) for v in _candidates(p))
        return Verdict(ok, "numeric" if ok else "mismatch")
    if tabmwp_normalize(pred, unit).lower() == tabmwp_normalize(gold, unit).lower():
        return Verdict(True, "exact")
    kind = _text_match(pred, gold)
    return Verdict(kind == "exact", kind)


@lru_cache(maxsize=4096)
def _meta(metadata: str | None) -> dict:
    try:
        meta = json.loads(metadata) if metadata else {}
    except (TypeError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _metadata(question: dict) -> dict:
    m = question.get("metadata")
    return m if isinstance(m, dict) else _meta(m)


def judge_for_question(text: str | None, question: dict, tolerance: float = 0.05,
                       relaxed_generic: bool = False) -> tuple[str | None, Verdict]:
    """Extract the answer of `text` and judge it against a canonical question row with the scorer
    its metadata names (the table in the module docstring). `scorer: relaxed` is ChartQA's 5%
    whatever `tolerance` is; generic numbers are exact, or within `tolerance` with
    `relaxed_generic` (`judge.relaxed_generic`, `judge.relaxed_tolerance`)."""
    text = _decode(text)
    meta = _metadata(question)
    pred = extract_answer(text)
    scorer, choices = meta.get("scorer"), question.get("choices")
    if pred is None:
        return None, Verdict(False, "unparsed")
    if _several_finals(text) and _conflicting(text, question, meta):
        return pred, Verdict(False, "ambiguous")
    if scorer == "tabmwp" and not choices:
        return pred, judge_tabmwp(pred, question["answer"], meta.get("unit"))
    read = pred if choices else _decimal_commas(pred)  # `3,5` is 3.5 outside TabMWP
    if scorer == "relaxed":
        tol = RELAXED  # the benchmark's own rule, whatever the run's tolerance
    elif relaxed_generic and meta.get("answer_type") != "integer":
        tol = tolerance
    else:
        tol = 0.0
    year_q = tol > 0 and _asks_year(question.get("question") or "")
    return pred, judge(read, question["answer"], choices, tol, meta.get("answer_type") == "integer", year_q)


def _decimal_commas(s: str) -> str:
    """`3,5` -> `3.5`, `1.250,5` -> `1250.5`; `1,250` (three digits after the comma) is unchanged."""
    if "," not in s:
        return s
    s = _GROUPED_DOTS.sub(lambda m: m[1].replace(".", "") + "." + m[2], s)
    return _DECIMAL_COMMA.sub(r"\1.\2", s)


def _conflicting(text, question: dict, meta: dict) -> bool:
    """Two explicit final answers (`final_answers`) that the question's scorer reads as different
    options or values. Spans that read as no option or no value (`Answer: let me check`) do not
    count; text answers are not compared."""
    spans = final_answers(text)
    if len(spans) < 2:
        return False
    choices = question.get("choices")
    if choices:
        named = {i for kind, i in (_choice(s, choices) for s in spans) if kind == "choice"}
        return len(named) > 1
    if _number(str(question.get("answer", ""))) is None:
        return False
    seen: list[tuple[float, ...]] = []
    for s_ in spans:
        c = _candidates(_number(_decimal_commas(s_) if meta.get("scorer") != "tabmwp" else s_))
        if c:
            if any(not any(_close(a, b, 0.0) for a in c for b in other) for other in seen):
                return True
            seen.append(c)
    return False


def answer_key(pred: str, question: dict) -> str:
    """What two answers to `question` share when they mean the same (majority voting), under the
    judge's rules: the option for multiple choice, the value for numbers (`1,000` = `1000` =
    `one thousand`), TabMWP's normalisation under its scorer, else the normalised text; an
    ambiguous answer is only the same as itself."""
    choices = question.get("choices")
    if choices:
        kind, i = _choice(pred, choices)
        return f"choice:{i}" if kind == "choice" else f"{kind}:{normalize(pred)}"
    meta = _metadata(question)
    if meta.get("scorer") == "tabmwp":
        t = tabmwp_normalize(pred, meta.get("unit"))
        n = _number(t)
        return f"number:{round(n, 3)!r}" if isinstance(n, float) else t.lower()
    n = _number(_decimal_commas(pred))
    if isinstance(n, float | tuple):
        return f"number:{_candidates(n)[0]!r}"  # the value as written
    return f"{n if isinstance(n, str) else 'text'}:{_ARTICLES.sub('', normalize(pred))}"


def shuffle_verdicts(rows: list[dict], seed: str) -> None:
    """Permute the verdicts (`correct`, `judge_reason`) of judged rows among them, in place and
    seeded: the canary of `judge.shuffle_labels`. The count of positives is unchanged; which
    rationales are called positive no longer depends on what they say."""
    import random

    verdicts = [(r["correct"], r["judge_reason"]) for r in rows]
    random.Random(seed).shuffle(verdicts)
    for r, (correct, reason) in zip(rows, verdicts):
        r.update(correct=correct, judge_reason=reason)
