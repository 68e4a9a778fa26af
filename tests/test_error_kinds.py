"""Why a rationale is wrong, checked against the scene's ground truth in the metadata."""

import json

import pytest

from r3v.config import EmbeddedTasksConfig
from r3v.embedded import tasks
from r3v.error_kinds import arithmetic_is_right, error_kind, reading_is_right

CHART = {"family": "chart", "qtype": "sum", "bars": {"red": 30, "blue": 70, "green": 20}}
TABLE = {"family": "table", "qtype": "most", "table": {"red": 3, "blue": 9, "yellow": 4}}
SHAPES = {"family": "clevr_math", "qtype": "subtract_colour", "objects": ["red circle", "blue square", "red square"]}
SUM_Q = "What is the sum of the red and blue bars?"


def test_every_gold_rationale_is_right():
    for r in tasks.generate("seed", 96, EmbeddedTasksConfig()):
        assert error_kind(r["rationale"], True, "numeric", r["metadata"], r["question"]) == "right", r


@pytest.mark.parametrize(("text", "correct", "reason", "kind"), [
    ("Bars: red 30, blue 70, green 20. 30 + 70 = 100. Answer: 100", True, "numeric", "right"),
    ("Bars: red 30, blue 70, green 50. 30 + 70 = 100. Answer: 100", True, "numeric", "right"),  # green not asked
    ("Bars: red 40, blue 60, green 20. 40 + 60 = 100. Answer: 100", True, "numeric", "lucky"),
    ("Bars: red 30, blue 60, green 20. 30 + 60 = 90. Answer: 90", False, "mismatch", "perception"),
    ("Bars: red 30, blue 70. 30 + 70 = 90. Answer: 90", False, "mismatch", "arithmetic"),
    ("Bars: red 30, blue 70. 30 - 20 = 10. Answer: 10", False, "mismatch", "reasoning"),
    ("Bars: red 30, red 40, blue 70. 30 + 70 = 100. Answer: 100", True, "numeric", "lucky"),  # read twice
    ("Bars: red many, blue 70. Answer: 100", True, "numeric", "lucky"),
    ("The red bar is tall.", False, "unparsed", "format"),
    ("Answer: 90", False, "mismatch", "perception"),  # no reading at all
])
def test_chart_kinds(text, correct, reason, kind):
    assert error_kind(text, correct, reason, json.dumps(CHART), SUM_Q) == kind


def test_questions_without_a_named_item_need_the_whole_reading():
    q = "Who has the most stickers?"
    assert reading_is_right("Table: red 3, blue 9, yellow 4. Most: blue 9. Answer: B", TABLE, q)
    assert not reading_is_right("Table: red 3, blue 9, yellow 5. Most: blue 9. Answer: B", TABLE, q)


def test_shapes_check_the_filtered_objects_and_the_total():
    q = "Subtract all red objects. How many objects are left?"
    ok = "Objects: blue square, red circle, red square. Total: 3. Red: 2. 3 - 2 = 1. Answer: 1"
    assert reading_is_right(ok, SHAPES, q)
    assert not reading_is_right("Objects: red circle, blue square. Total: 2. Red: 1. 2 - 1 = 1. Answer: 1", SHAPES, q)
    assert reading_is_right("Objects: red circle, blue circle, red square. Answer: 1", SHAPES, q)  # blue's shape not asked
    assert reading_is_right("Objects: red circle.", {"family": "clevr_math"}, q) is None  # no truth kept
    assert error_kind("x. Answer: 2", False, "mismatch", {"family": "user"}, q) == "unknown"


def test_arithmetic_chains():
    assert arithmetic_is_right("3 + 4 + 2 = 9. 9 - 4 = 5")
    assert not arithmetic_is_right("Total: 4. 3 + 5 + 1 = 8")
    assert arithmetic_is_right("no arithmetic here")


def test_checking_judge_turns_lucky_positives_into_negatives():
    from r3v.error_kinds import judge_checking_reading
    from r3v.judge import Verdict, judge_for_question

    q = {"question": SUM_Q, "answer": "100", "choices": None, "metadata": json.dumps(CHART)}
    lucky = "Bars: red 40, blue 60, green 20. 40 + 60 = 100. Answer: 100"
    right = "Bars: red 30, blue 70, green 20. 30 + 70 = 100. Answer: 100"
    assert judge_for_question(lucky, q)[1].correct
    assert judge_checking_reading(lucky, q) == ("100", Verdict(False, "wrong_reading"))
    assert judge_checking_reading(right, q) == judge_for_question(right, q)
    wrong = "Bars: red 30, blue 70. 30 + 70 = 90. Answer: 90"
    assert judge_checking_reading(wrong, q) == judge_for_question(wrong, q)  # a wrong answer stays as judged
    user = {**q, "metadata": None}  # no scene truth: the answer alone
    assert judge_checking_reading(lucky, user) == judge_for_question(lucky, user)
