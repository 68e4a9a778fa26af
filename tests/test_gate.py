"""The single-step gate's checks (r3v/analysis/gate.py) and the rule that a positive is a rationale,
table-driven on hand-written rationales about known scenes."""

import json

import pytest

from r3v.analysis.gate import failures, gate_rows, step_facts
from r3v.judge import reasoning_before_answer
from r3v.rationale import is_rationale

TABLE = {"family": "table", "level": 2, "table": {"red": 3, "blue": 7, "green": 2}, "start": 35, "results": [38, 31]}
SHAPES = {"family": "clevr_math", "level": 2, "objects": ["red circle", "blue square", "red triangle"], "start": 35,
          "results": [38, 36]}

CASES = [  # (meta, text, listing exact, (look-ups right, of), (equations right, of))
    # the gold rationale: every step right
    (TABLE, "Table: red 3, blue 7, green 2. 35 + red 3 = 38. 38 - blue 7 = 31. Answer: 31", True, (2, 2), (2, 2)),
    # misread blue (7 -> 9), then looks its own 9 up and adds right: a perception error, no look-up error
    (TABLE, "Table: red 3, blue 9, green 2. 35 + red 3 = 38. 38 - blue 9 = 29. Answer: 29", False, (2, 2), (2, 2)),
    # read right, writes blue 4 (not its listing's 7): a look-up error; 38 - 4 = 34 is right arithmetic
    (TABLE, "Table: red 3, blue 7, green 2. 35 + red 3 = 38. 38 - blue 4 = 34. Answer: 34", True, (1, 2), (2, 2)),
    # a slip in a sum
    (TABLE, "Table: red 3, blue 7, green 2. 35 + red 3 = 39. 39 - blue 7 = 32. Answer: 32", True, (2, 2), (1, 2)),
    # the items in another order are not the scene's reading
    (TABLE, "Table: blue 7, red 3, green 2. 35 + red 3 = 38. Answer: 38", False, (1, 1), (1, 1)),
    # no listing: nothing to look up against
    (TABLE, "35 + red 3 = 38. Answer: 38", None, (0, 0), (1, 1)),
    # clevr_math: `total` is the listing's length, a colour its count there, an absent colour 0
    (SHAPES, "Objects: red circle, blue square, red triangle. 35 + total 3 = 38. 38 - red 2 = 36. "
             "36 - green 0 = 36. Answer: 36", True, (3, 3), (3, 3)),
    # a listing one object short: its own total is 2 and its own red count 1, so both look-ups are wrong
    (SHAPES, "Objects: red circle, blue square. 35 + total 3 = 38. 38 - red 2 = 36. Answer: 36", False, (0, 2), (2, 2)),
]


@pytest.mark.parametrize("meta,text,listing,lookups,arithmetic", CASES)
def test_each_step_is_checked_on_its_own(meta, text, listing, lookups, arithmetic):
    c = step_facts(text, meta)
    assert c["listing"] is listing
    assert (c["lookups_right"], c["lookups"]) == lookups
    assert (c["arithmetic_right"], c["equations"]) == arithmetic


RATIONALES = [  # (text, question metadata, a rationale?)
    ("Table: red 3, blue 7. 35 + red 3 = 38. Answer: 38", TABLE, True),
    ("Answer: 38", TABLE, False),  # a bare answer, however right
    (": 38", TABLE, False),  # the leaked select target of issue 30
    ("35 + red 3 = 38. Answer: 38", TABLE, False),  # no reading of the table
    ("Table: red 3, blue 7. Answer: 38", TABLE, False),  # a reading, no step
    ("The bars are 3 and 4, so 3 + 4 = 7.\nAnswer: 7", {"answer_type": "integer"}, True),  # user data: words enough
    ("So it is 7", {}, False),
]


@pytest.mark.parametrize("text,meta,expected", RATIONALES)
def test_a_positive_is_a_rationale(text, meta, expected):
    assert is_rationale(text, {"metadata": json.dumps(meta)}) is expected


def test_reasoning_before_the_answer_counts_words_before_the_marker():
    assert not reasoning_before_answer("Answer: 12")
    assert not reasoning_before_answer(None)
    assert reasoning_before_answer("Three plus nine. Answer: 12")
    assert not reasoning_before_answer("Three plus nine. Answer: 12", min_words=4)


def test_rows_per_family_and_level_and_what_misses_the_gate():
    gold = CASES[0][1]
    records = [{"metadata": TABLE, "question": "…", "strategy": "greedy", "question_id": f"q{i}", "text": t,
                "correct": t.endswith("31"), "judge_reason": "exact"}
               for i, t in enumerate([gold] * 9 + [CASES[2][1]])]
    records += [{**r, "strategy": "sample"} for r in records]
    rows = gate_rows(records)
    cell = next(r for r in rows if r["level"] == 2 and r["strategy"] == "greedy")
    assert cell["outputs"] == 10 and cell["accuracy"] == 0.9 and cell["listing"] == 1.0
    assert cell["lookup"] == 19 / 20 and cell["arithmetic"] == 1.0 and cell["rationale_free"] == 0.0
    assert [r["family"] for r in rows][-2:] == ["all", "all"]
    assert failures(rows) == ["table level 2 (greedy): lookup 0.950 < 0.98", "table level 2 (sample): lookup 0.950 < 0.98"]
