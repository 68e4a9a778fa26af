"""The evaluation's arithmetic: pass@1, maj@N, oracle@N and select@N over scripted completions.

The sampler here is a scripted implementation of the Sampler protocol (the model's outputs are
the test's input); the real model runs through the same function in the integration tests.
"""

import json

import pytest

from r3v import prompts
from r3v.evaluate import evaluate, majority
from r3v.rollout import Completion, SamplingParams

QUESTIONS = [
    {"id": "q1", "image": {"bytes": b""}, "question": "How many?", "answer": "3", "choices": None,
     "metadata": json.dumps({"answer_type": "integer"})},
    {"id": "q2", "image": {"bytes": b""}, "question": "How many more?", "answer": "4", "choices": None,
     "metadata": json.dumps({"answer_type": "integer"})},
]
GREEDY = {"q1": "Answer: 3", "q2": "Counting the objects here.\nno final answer"}
SAMPLES = {"q1": ["Answer: 2", "Answer: 3", "Answer: 3", "Answer: 5"],
           "q2": ["nothing", "Answer: 1", "Answer: 4", "Answer: 4"]}


class ScriptedSampler:
    """Greedy CoT -> GREEDY; sampled CoT -> SAMPLES (one per seed, in order); a select prompt ->
    the gold answer only when it shows exactly three candidates, which must be the first samples."""

    def __init__(self):
        self.select_prompts: list[tuple[str, int]] = []

    def generate(self, requests, params):
        out = []
        for r in requests:
            text = r.messages[0]["content"][1]["text"]
            if prompts.SELECT_INSTRUCTION in text:
                shown = [line for line in text.splitlines() if line.startswith("(")]
                n = len(shown)
                assert [s[4:] for s in shown] == SAMPLES[r.key][:n]
                self.select_prompts.append((r.key, n))
                gold = next(q["answer"] for q in QUESTIONS if q["id"] == r.key)
                texts = [f"Answer: {gold}" if n == 3 else "Answer: 0"]
            elif params.temperature == 0:
                texts = [GREEDY[r.key]]
            else:
                texts = SAMPLES[r.key][:len(r.seeds)]
            out.append([Completion(t, True, 10, 5, 0.0) for t in texts])
        return out


def run(ns):
    sampler = ScriptedSampler()
    preds, metrics = evaluate(sampler, QUESTIONS, 2, 0, ns, SamplingParams(1.0, 1.0, 16), 0.05)
    return sampler, preds, {m["metric"]: m["value"] for m in metrics}


def test_metrics_for_several_n_share_one_sample_set():
    sampler, preds, m = run((1, 3))
    assert m["pass@1"] == 0.5  # q2's greedy answer is unparsed: wrong
    assert m["maj@1"] == 0.0 and m["oracle@1"] == 0.0  # q1 "2" wrong; q2 unparsed
    assert m["maj@3"] == 0.5  # q1: 3 wins 2-1; q2: unparsed does not vote, 1 vs 4 tie -> first seen (1)
    assert m["oracle@3"] == 1.0
    assert m["select@1"] == 0.0 and m["select@3"] == 1.0
    assert sorted(sampler.select_prompts) == [("q1", 1), ("q1", 3), ("q2", 1), ("q2", 3)]
    assert len([p for p in preds if p["strategy"] == "sample"]) == 2 * 3  # max(ns) samples per question
    assert {p["strategy"] for p in preds} == {"greedy", "sample", "select@1", "select@3"}


def test_one_n_gives_the_four_metrics():
    _, _, m = run(4)
    assert list(m) == ["pass@1", "maj@4", "oracle@4", "select@4", "rationale_free"]
    assert m["maj@4"] == 1.0  # q2: 4 now wins 2-1
    # q1's greedy output is a bare answer (no reasoning before it); q2's reasons (a wrong answer
    # may still hold reasoning: the share is of outputs, right or wrong)
    assert m["rationale_free"] == 0.5


def test_bad_n_is_refused():
    with pytest.raises(ValueError, match="must be >= 1"):
        run((0, 3))


@pytest.mark.parametrize("answers, expected", [
    (["2", "3", "3"], "3"), ([None, "1", "4"], "1"), ([None, None], None), (["4.0", "4", "5"], "4.0"),
])
def test_majority(answers, expected):
    assert majority(answers) == expected


def test_majority_votes_by_what_the_answers_mean():
    """maj@N counts answers that say the same thing together: an option by letter or text, a
    number however it is written, TabMWP's normalisation under its scorer."""
    from functools import partial

    from r3v.judge import answer_key

    mc = {"choices": ["even", "odd"], "metadata": "{}"}
    key = partial(answer_key, question=mc)
    assert majority(["even", "B", "odd", "(B)"], key) == "B" and majority(["even", "B", "odd", "(B)"]) == "even"
    num = {"choices": None, "metadata": "{}"}
    assert majority(["1000", "7", "1,000", "7"], partial(answer_key, question=num)) == "1000"
    tab = {"choices": None, "metadata": '{"scorer": "tabmwp", "unit": "dollars"}'}
    assert majority(["3/4", "1", "0.75 dollars", "1"], partial(answer_key, question=tab)) == "3/4"
    assert majority(["3/4", "1", "0.75 dollars", "1"]) == "1"
