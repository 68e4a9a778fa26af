"""Answer extraction and correctness, table-driven: one comment per case."""

import pytest

from r3v.judge import extract_answer, judge, judge_text

EXTRACT = [
    ("Objects: red circle. Total: 1. Answer: 1", "1"),  # the trained format
    ("answer: 7.", "7"),  # case-insensitive, trailing period dropped
    ("Answer: 3\nAnswer: 4", "4"),  # the last one wins
    ("Answer: 12 apples\nmore text", "12 apples"),  # up to the end of its line
    ("so the answer is 42", "42"),  # fallback 1
    ("we get \\boxed{5}", "5"),  # fallback 2
    ("Answer: (B)", "(B)"),  # letters kept as written
    ("Total: 3. 3 - 1 = 2.", None),  # no final answer: unparsed
    ("Answer:   ", None),  # empty answer: unparsed
    ("", None),  # nothing
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


JUDGE = [
    # pred, gold, choices, integer, correct, reason
    (None, "3", None, False, False, "unparsed"),  # unparsed is wrong, never random credit
    ("3", "3", None, True, True, "numeric"),  # integer count
    ("3.0", "3", None, True, True, "numeric"),  # same number
    ("4", "3", None, True, False, "mismatch"),  # off by one
    ("102", "100", None, False, True, "numeric"),  # relaxed: within 5%
    ("106", "100", None, False, False, "mismatch"),  # relaxed: outside 5%
    ("20", "19", None, True, False, "mismatch"),  # counts are exact even where 5% would pass
    ("1,000", "1000", None, False, True, "numeric"),  # thousands separator
    ("45%", "45", None, False, True, "numeric"),  # percent sign
    ("$3.50", "3.5", None, False, True, "numeric"),  # currency
    ("0", "0", None, False, True, "numeric"),  # zero is exact
    ("0.01", "0", None, False, False, "mismatch"),  # no tolerance around zero
    ("1/2", "0.5", None, False, True, "numeric"),  # fraction
    ("Blue", "blue", None, False, True, "exact"),  # normalised exact match
    ("red.", "blue", None, False, False, "mismatch"),  # words differ
    ("B", "B", ["cat", "dog"], False, True, "choice"),  # letter vs letter
    ("(B)", "dog", ["cat", "dog"], False, True, "choice"),  # letter vs option text
    ("dog", "B", ["cat", "dog"], False, True, "choice"),  # option text vs letter
    ("A", "B", ["cat", "dog"], False, False, "mismatch"),  # wrong option
    ("E", "B", ["cat", "dog"], False, False, "bad_choice"),  # out of range: wrong, not a random pick
    ("horse", "B", ["cat", "dog"], False, False, "bad_choice"),  # names no option
]


@pytest.mark.parametrize("pred,gold,choices,integer,correct,reason", JUDGE)
def test_judge(pred, gold, choices, integer, correct, reason):
    v = judge(pred, gold, choices, tolerance=0.05, integer=integer)
    assert (v.correct, v.reason) == (correct, reason)


def test_judge_text_unparsed_rationale_is_wrong():
    ans, v = judge_text("Objects: red circle, blue square. Total: 2.", "2", integer=True)
    assert ans is None and not v.correct and v.reason == "unparsed"
