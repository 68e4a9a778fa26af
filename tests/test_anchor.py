"""The anchor data the R3V authors keep in every iteration's training file (train.anchor)."""

from r3v import prompts
from r3v.trainer.data import anchor_examples


def _q(qid, rationale=None):
    return {"id": qid, "image": {"bytes": b"png"}, "question": f"How many in {qid}?", "answer": "7",
            "choices": None, "rationale": rationale}


def test_gold_rationales_and_every_train_questions_direct_answer():
    seed = [_q(f"s{i}", f"Table: red {i}. 35 + red {i} = {35 + i}. Answer: {35 + i}") for i in range(5)]
    train = [_q("t0"), _q("t1")]
    ex = anchor_examples(seed, train, max_rationales=0, seed=1)
    assert [e.kind for e in ex] == ["sft"] * 7  # all of it is L_SFT
    assert [e.target for e in ex[:5]] == [q["rationale"] for q in seed]  # the seed split's gold rationales
    assert all(prompts.COT_INSTRUCTION in e.messages[0]["content"][1]["text"] for e in ex[:5])
    direct = ex[5:]  # each train question -> `Answer: X` to the direct prompt (never to the CoT prompt)
    assert [e.target for e in direct] == ["Answer: 7", "Answer: 7"]
    assert all(prompts.DIRECT_INSTRUCTION in e.messages[0]["content"][1]["text"] for e in direct)


def test_a_capped_draw_of_rationales_is_seeded():
    seed = [_q(f"s{i}", f"r{i}. Answer: 7") for i in range(20)]
    a, b = (anchor_examples(seed, [], max_rationales=4, seed=s) for s in (1, 1))
    c = anchor_examples(seed, [], max_rationales=4, seed=2)
    assert len(a) == 4 and [e.target for e in a] == [e.target for e in b] != [e.target for e in c]
