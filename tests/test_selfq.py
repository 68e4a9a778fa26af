"""SQ-LLaVA self-questioning: turn switching, packing, the [vusr] renderer's label spans, L_SQ."""

import math
import subprocess
import sys

import pytest
import torch

from r3v import prompts
from r3v.config import EmbeddedBenchConfig, SelfQuestioningConfig, load_config
from r3v.embedded.bench.suite import generate
from r3v.objective import TERM_INDEX
from r3v.sq.selfq import ask_messages, conversation, image_key, pack, sq_rows, switched
from r3v.trainer.data import IGNORE, Example, collate, encode
from r3v.trainer.loss import r3v_loss

QS = generate("train", 6, EmbeddedBenchConfig(questions_per_image=3))
BY_ID = {q["id"]: q for q in QS}


def test_questions_per_image_asks_several_questions_about_one_image():
    keys = [image_key(q) for q in QS]
    assert keys[0] == keys[1] == keys[2] != keys[3] == keys[4] == keys[5]
    assert len({q["question"] for q in QS[:3]}) == 3
    # one question per image (the default) leaves the benchmark as it was
    assert generate("train", 4, EmbeddedBenchConfig())[3]["question"] == \
        generate("train", 4, EmbeddedBenchConfig(questions_per_image=1))[3]["question"]


def test_switching_is_seeded_with_probability_delta():
    ids = [f"q{i}" for i in range(4000)]
    draws = [switched(0, 1, i, 0.5) for i in ids]
    assert abs(sum(draws) / len(ids) - 0.5) < 0.03
    assert draws == [switched(0, 1, i, 0.5) for i in ids]  # reproducible
    assert draws != [switched(0, 2, i, 0.5) for i in ids]  # redrawn each iteration
    assert not any(switched(0, 1, i, 0.0) for i in ids) and all(switched(0, 1, i, 1.0) for i in ids)


def test_pack_groups_by_image_in_near_equal_chunks():
    items = [dict(question_id=f"q{i}", image_key=k) for i, k in enumerate("aaaaabcc")]
    chunks = pack(items, max_turns=4)
    assert [[it["question_id"] for it in c] for c in chunks] == [["q0", "q1", "q2"], ["q3", "q4"], ["q6", "q7"]]


def _items(rationale_for=()):
    return [dict(question_id=q["id"], image_key=image_key(q), source_ids=[f"{q['id']}#1#0"] if q["id"] in rationale_for else [],
                 rationale="Objects: x. Answer: 1" if q["id"] in rationale_for else None) for q in QS]


def test_first_turn_never_switched_and_context_answers_not_learnt():
    cfg = SelfQuestioningConfig(enabled=True, delta=1.0)
    rows = sq_rows(_items(rationale_for={QS[1]["id"]}), {q["id"]: q["answer"] for q in QS}, 1, 0, cfg)
    assert len(rows) == 2
    turns = rows[0]["turns"]
    assert [t["asked_by"] for t in turns] == ["user", "vusr", "vusr"]
    assert [t["answer_kind"] for t in turns] == ["context", "rationale", "context"]
    assert rows[0]["source_ids"] == [f"{QS[1]['id']}#1#0"]
    # with delta 0 and no positive, a sample teaches nothing and is left out
    assert sq_rows(_items(), {q["id"]: q["answer"] for q in QS}, 1, 0, SelfQuestioningConfig(delta=0.0)) == []
    gold = sq_rows(_items(), {q["id"]: q["answer"] for q in QS}, 1, 0,
                   SelfQuestioningConfig(delta=0.0, unsolved_answers=True))
    assert [t["answer_kind"] for t in gold[0]["turns"]] == ["gold"] * 3


def test_vusr_labels_cover_the_question_and_its_end_of_turn(processor):
    """A switched turn's question (and end of turn) is L_SQ's target, the answers after it L_SFT's;
    the first turn's question, the [vusr] marker, the image and context answers are not learnt."""
    turns = [dict(question_id=QS[0]["id"], asked_by="user", answer="Answer: 5", answer_kind="context"),
             dict(question_id=QS[1]["id"], asked_by="vusr", answer="Objects: x. Answer: 1", answer_kind="rationale"),
             dict(question_id=QS[2]["id"], asked_by="user", answer="Answer: 3", answer_kind="gold")]
    messages, targets = conversation(turns, BY_ID)
    enc = encode(processor, Example("sq", QS[0]["image"]["bytes"], tuple(messages), targets=tuple(targets)), 1024)
    tok = processor.tokenizer
    eot = tok.eos_token

    def spans(kind):
        idx = ((enc.token_kinds == TERM_INDEX[kind]) & (enc.labels != IGNORE)).nonzero().flatten().tolist()
        runs, cur = [], [idx[0]]
        for i in idx[1:]:
            if i == cur[-1] + 1:
                cur.append(i)
            else:
                runs.append(cur)
                cur = [i]
        return [tok.decode(enc.input_ids[r]) for r in runs + [cur]]

    assert spans("sq") == [prompts.format_question(QS[1]["question"], QS[1]["choices"]) + eot]
    assert spans("sft") == ["Objects: x. Answer: 1" + eot, "Answer: 3" + eot]
    assert set(enc.token_kinds[enc.labels == IGNORE].tolist()) == {-1}
    assert (enc.labels != IGNORE).sum() == (enc.token_kinds >= 0).sum()
    text = tok.decode(enc.input_ids)
    assert text.count(prompts.VUSR) == 1 and text.count("<image>") == 64


def test_single_turn_examples_keep_one_kind_per_row(processor):
    q = QS[0]
    batch = collate([encode(processor, Example(kind, q["image"]["bytes"], tuple(prompts.cot(q["question"])), "Answer: 1"),
                            512) for kind in ("sft", "refine", "select")], processor.tokenizer.pad_token_id)
    for row, kind in enumerate(("sft", "refine", "select")):
        labelled = batch["labels"][row] != IGNORE
        assert set(batch["kinds"][row][labelled].tolist()) == {TERM_INDEX[kind]}
        assert set(batch["kinds"][row][~labelled].tolist()) == {-1}


def test_loss_sq_is_its_own_token_mean_term():
    """Row 0 mixes 2 sq tokens and 1 sft token; row 1 has 3 sft tokens. Uniform logits over 2
    -> every term ln 2; then make row 0's question tokens certain: only L_SQ falls."""
    logits = torch.zeros(2, 6, 2)
    labels = torch.full((2, 6), IGNORE)
    kinds = torch.full((2, 6), -1)
    labels[0, 2:4], kinds[0, 2:4] = 1, TERM_INDEX["sq"]
    labels[0, 5], kinds[0, 5] = 0, TERM_INDEX["sft"]
    labels[1, 3:6], kinds[1, 3:6] = 1, TERM_INDEX["sft"]
    total, m = r3v_loss(logits, labels, kinds, {"sft": 1.0, "refine": 1.0, "select": 1.0, "sq": 0.5})
    assert math.isclose(m["loss/sq"], math.log(2), rel_tol=1e-6) and m["tokens/sq"] == 2 and m["tokens/sft"] == 4
    assert math.isclose(float(total), 1.5 * math.log(2), rel_tol=1e-6)
    logits[0, 1:3, 1] = 20.0
    _, m = r3v_loss(logits, labels, kinds, {"sft": 1.0, "refine": 1.0, "select": 1.0, "sq": 0.5})
    assert m["loss/sq"] < 1e-6 and math.isclose(m["loss/sft"], math.log(2), rel_tol=1e-6)


def test_asking_prompt_ends_at_the_virtual_users_marker(processor):
    q = QS[0]
    text = prompts.generation_prompt(processor, ask_messages(q, "Answer: 5"))
    assert text.endswith(f"<|im_start|>user\n{prompts.VUSR}\n")
    assert "Answer: 5<|im_end|>" in text and "assistant\n" not in text.split("Answer: 5")[1]


def test_sq_keys_leave_old_hashes_alone():
    base = load_config()
    assert load_config(None, ["sq.enabled=false"]).hash() == base.hash()
    assert load_config(None, ["sq.enabled=true"]).hash() != base.hash()
    assert load_config(None, ["model.prototype.enabled=true"]).hash() != base.hash()


@pytest.mark.slow
def test_loop_with_self_questioning_trains_l_sq_and_asks(tmp_path, model_overrides, embedded_model):
    """One iteration with sq and the prototype extractor on (steps without Prefect): the seed stage
    and the iteration both train L_SQ, the sq set is stored with its turns, the extractor is in M_0
    and trained in the adapter, and `r3v ask` samples from the virtual user. Nothing here depends on
    how well M_0 answers (the virtual user's switched turns feed the sq set either way): a short
    warm-up (16 steps; 60 took 75 s)."""
    from r3v import steps
    from r3v.run import init_run
    from r3v.store import Store

    cfg = load_config(None, [
        *model_overrides, f"run.root={tmp_path}", "run.name=sq", "run.iterations=1",
        "data.embedded.n_seed=120", "data.embedded.n_train=24", "data.embedded.n_test=6",
        "data.embedded.questions_per_image=3", "warmup.steps=16", "warmup.batch_size=16", "train.epochs=1",
        "train.batch_size=8", "train.grad_accum=1", "rollout.max_new_tokens=48", "sq.enabled=true",
        "model.prototype.enabled=true", "model.prototype.clusters=16"])
    run_dir = str(init_run(cfg))
    for step in (steps.prepare, steps.warmup):
        step(run_dir)
    for step in (steps.rollout, steps.judge, steps.build_sets):
        step(run_dir, 1)
    sizes = steps.build_sets(run_dir, 1)
    store = Store(run_dir)
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    samples = q("SELECT turns FROM sets WHERE kind = 'sq'")
    # 24 questions, 3 per image: 8 samples, less those with nothing to learn (no switch, no positive)
    assert 0 < sizes["sq"] == len(samples) <= 8
    assert all(any(t["asked_by"] == "vusr" or t["answer_kind"] != "context" for t in s["turns"]) for s in samples)
    assert all(len(s["turns"]) == 3 and s["turns"][0]["asked_by"] == "user" for s in samples)
    facts = steps.train(run_dir, 1)
    # the last step's losses are of the kinds in its batch; that every iteration trains L_SQ is in
    # the train log, checked below
    assert facts["steps"] >= 1 and all(v > 0 for k, v in facts.items() if k.startswith("loss/"))
    from safetensors import safe_open

    from r3v.prototype import WEIGHTS_FILE

    assert (tmp_path / "sq" / "checkpoints" / "warmup" / WEIGHTS_FILE).exists()
    with safe_open(str(tmp_path / "sq" / "checkpoints" / "iteration=1" / "adapter_model.safetensors"), "pt") as f:
        assert any("prototype_extractor" in k and "gate" in k for k in f.keys())
    log = q("SELECT iteration, sum(tokens_sq) AS sq, count(loss_sq) AS n FROM src_train_log GROUP BY 1 ORDER BY 1")
    assert all(r["sq"] > 0 and r["n"] > 0 for r in log) and [r["iteration"] for r in log] == [0, 1]
    turns = q("SELECT t.asked_by, count(*) AS n FROM sets, unnest(turns) AS u(t) WHERE kind = 'sq' GROUP BY 1")
    assert {r["asked_by"] for r in turns} == {"user", "vusr"}
    out = subprocess.run([sys.executable, "-m", "r3v.cli", "ask", run_dir, "--n", "2"],
                         capture_output=True, text=True, check=True).stdout
    asked = q("SELECT * FROM src_asked")
    assert len(asked) == 2 * 2 and {r["iteration"] for r in asked} == {1}  # 6 test questions = 2 images
    assert "asked by [vusr]" in out and all(r["context_answer"] for r in asked)


def test_sq_set_from_the_store_and_a_clear_error_without_multi_question_images(tmp_path):
    from r3v.datasets import to_table
    from r3v.sq.selfq import build_sq_set
    from r3v.store import Store

    def store_with(per_image, name):
        store = Store(tmp_path / name)
        rows = [dict(r, split="train") for r in generate("train", 12, EmbeddedBenchConfig(questions_per_image=per_image))]
        store.write("questions", to_table(rows), split="train")
        return store

    with pytest.raises(ValueError, match="questions_per_image"):
        build_sq_set(store_with(1, "one"), 1, 0, SelfQuestioningConfig(enabled=True))
    # an empty pool: no positives, so answers are context and only switched questions teach
    rows = build_sq_set(store_with(3, "three"), 1, 0, SelfQuestioningConfig(enabled=True))
    assert 0 < len(rows) <= 4 and all(len(r["turns"]) == 3 for r in rows)
    assert all(t["answer_kind"] == "context" for r in rows for t in r["turns"])
    assert all(any(t["asked_by"] == "vusr" for t in r["turns"]) for r in rows)
