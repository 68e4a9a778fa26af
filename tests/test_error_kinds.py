"""Why a rationale is wrong, checked against the scene's ground truth in the metadata."""

import json

import pytest

from r3v.analysis.error_kinds import error_kind
from r3v.config import EmbeddedBenchConfig
from r3v.embedded.bench import suite
from r3v.rationale import arithmetic_is_right, reading_is_right

CHART = {"family": "chart", "qtype": "sum", "bars": {"red": 30, "blue": 70, "green": 20}}
TABLE = {"family": "table", "qtype": "most", "table": {"red": 3, "blue": 9, "yellow": 4}}
SHAPES = {"family": "clevr_math", "qtype": "subtract_colour", "objects": ["red circle", "blue square", "red square"]}
SUM_Q = "What is the sum of the red and blue bars?"


def test_every_gold_rationale_is_right():
    for r in suite.generate("seed", 96, EmbeddedBenchConfig()):
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
    from r3v.judge import Verdict, judge_for_question
    from r3v.rationale import judge_checking_reading

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


def test_a_right_answer_from_a_wrong_chain_is_lucky():
    # the levelled benchmark keeps the gold chain's intermediate results: a right answer reached
    # through a wrong step (two slips that cancel) is a lucky positive, not a right one
    meta = {"family": "chart", "level": 2, "bars": {"red": 30, "blue": 70, "green": 20}, "results": [100, 80]}
    q = "Take the red bar. Add the blue bar. Subtract the green bar. What is the result?"
    right = "Bars: red 30, blue 70, green 20. red 30 + blue 70 = 100. 100 - green 20 = 80. Answer: 80"
    cancelled = "Bars: red 30, blue 70, green 20. red 30 + blue 70 = 90. 90 - green 20 = 80. Answer: 80"
    skipped = "Bars: red 30, blue 70, green 20. red 30 + blue 70 = 100. Answer: 80"
    assert error_kind(right, True, "numeric", meta, q) == "right"
    assert error_kind(cancelled, True, "numeric", meta, q) == "lucky"
    assert error_kind(skipped, True, "numeric", meta, q) == "lucky"
    assert arithmetic_is_right(right) and not arithmetic_is_right(cancelled)
    assert error_kind(cancelled.replace("Answer: 80", "Answer: 70"), False, "mismatch", meta, q) == "arithmetic"


def test_shape_chains_check_the_total_and_each_subtracted_colour():
    meta = {"family": "clevr_math", "level": 2, "objects": ["red circle", "blue square", "red square"],
            "results": [1, 3]}
    q = "Subtract all red objects. Add 2 green circles. How many objects are left?"
    assert reading_is_right("Objects: red square, blue circle, red circle. Total: 3.", meta, q)  # shapes not needed
    assert not reading_is_right("Objects: red square, blue circle, blue circle. Total: 3.", meta, q)
    assert not reading_is_right("Objects: red square, red circle. Total: 2.", meta, q)  # the total is needed


def test_shuffled_verdicts_keep_the_count_and_are_seeded():
    from r3v.judge import shuffle_verdicts

    rows = [{"correct": i % 3 == 0, "judge_reason": "numeric" if i % 3 == 0 else "mismatch", "i": i} for i in range(30)]
    a, b = [dict(r) for r in rows], [dict(r) for r in rows]
    shuffle_verdicts(a, "0:1:canary")
    shuffle_verdicts(b, "0:1:canary")
    assert a == b  # seeded
    assert sum(r["correct"] for r in a) == sum(r["correct"] for r in rows)  # same number of positives
    assert [r["correct"] for r in a] != [r["correct"] for r in rows]  # on other samples
    assert all((r["judge_reason"] == "numeric") == r["correct"] for r in a)  # verdicts move whole
    assert [r["i"] for r in a] == list(range(30))  # the samples stay put
