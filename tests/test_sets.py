"""Set rules on a hand-built pool (see r3v/sql/{sft_examples,refine_pairs,select_sets}.sql)."""

import pyarrow as pa

from r3v.schema import SAMPLE_SCHEMA, SET_SCHEMA
from r3v.sets import build_sets
from r3v.store import Store

# (question, iteration, sample_index, correct)
POOL = [
    ("q1", 1, 0, True), ("q1", 1, 1, False), ("q1", 1, 2, False),
    ("q1", 2, 0, False), ("q1", 2, 1, True), ("q1", 2, 2, True),
    ("q2", 1, 0, True), ("q2", 1, 1, True), ("q2", 1, 2, True),  # all right: SFT only
    ("q3", 1, 0, False), ("q3", 1, 1, False), ("q3", 1, 2, False),  # all wrong: nothing
    ("q4", 1, 0, False), ("q4", 1, 1, False), ("q4", 1, 2, True),  # 1 right, 2 wrong
]


def sid(q, it, i):
    return f"{q}#{it}#{i}"


def _store(tmp_path, pool=POOL) -> Store:
    store = Store(tmp_path)
    for it in sorted({p[1] for p in pool}):
        rows = [dict(sample_id=sid(q, i, s), question_id=q, iteration=i, sample_index=s, seed=0,
                     prompt_kind="cot", rationale=f"rationale {sid(q, i, s)} Answer: {'7' if ok else '0'}",
                     finished=True, model_ref="m@none", prompt_tokens=1, completion_tokens=1, seconds=0.0,
                     answer="7" if ok else "0", gold="7", correct=ok, judge_reason="numeric" if ok else "mismatch")
                for (q, i, s, ok) in pool if i == it]
        store.write("samples", pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), iteration=it)
    return store


def _by_q(table):
    return {r["question_id"]: r for r in table.to_pylist()}


def test_sets_from_accumulated_pool(tmp_path):
    sets = build_sets(_store(tmp_path), iteration=2, run_seed=0)
    sft = _by_q(sets["sft"])
    # SFT: every question with >= 1 positive -> its latest positive (iteration desc, then lowest index)
    assert set(sft) == {"q1", "q2", "q4"}
    assert sft["q1"]["source_ids"] == [sid("q1", 2, 1)]
    assert sft["q2"]["source_ids"] == [sid("q2", 1, 0)]
    assert sft["q1"]["target"].startswith(f"rationale {sid('q1', 2, 1)}")
    # refine: questions with both -> (latest negative -> latest positive)
    ref = _by_q(sets["refine"])
    assert set(ref) == {"q1", "q4"}
    assert ref["q1"]["source_ids"] == [sid("q1", 2, 0), sid("q1", 2, 1)]
    assert ref["q1"]["negative"].startswith(f"rationale {sid('q1', 2, 0)}")
    assert ref["q4"]["source_ids"] == [sid("q4", 1, 0), sid("q4", 1, 2)]
    # select: q1 has >= 2 of each -> both rules; q4 (1 right, 2 wrong) -> p1n2 only
    sel = {r["example_id"]: r for r in sets["select"].to_pylist()}
    assert set(sel) == {"select#q1#p2n1", "select#q1#p1n2", "select#q4#p1n2"}
    assert sorted(sel["select#q1#p2n1"]["source_ids"]) == sorted([sid("q1", 2, 1), sid("q1", 2, 2), sid("q1", 2, 0)])
    assert sorted(sel["select#q1#p1n2"]["source_ids"]) == sorted([sid("q1", 2, 1), sid("q1", 2, 0), sid("q1", 1, 1)])
    for r in sel.values():
        assert r["target"] == "Answer: 7"
        assert len(r["candidates"]) == 3 and any(r["candidate_correct"])
        for cand, src, ok in zip(r["candidates"], r["source_ids"], r["candidate_correct"]):
            assert cand.startswith(f"rationale {src}") and ok == (src in {sid(*p[:3]) for p in POOL if p[3]})


def test_sets_see_only_the_pool_up_to_the_iteration(tmp_path):
    sets = build_sets(_store(tmp_path), iteration=1, run_seed=0)
    assert _by_q(sets["sft"])["q1"]["source_ids"] == [sid("q1", 1, 0)]
    assert _by_q(sets["refine"])["q1"]["source_ids"] == [sid("q1", 1, 1), sid("q1", 1, 0)]
    assert sorted(r["example_id"] for r in sets["select"].to_pylist()) == ["select#q1#p1n2", "select#q4#p1n2"]
    assert all(r["iteration"] == 1 for k in sets for r in sets[k].to_pylist())


def test_select_candidates_shuffled_by_seed(tmp_path):
    pool = [(f"q{j:02d}", 1, i, i == 0) for j in range(40) for i in range(3)]  # 1 right + 2 wrong each
    store = _store(tmp_path, pool)
    a = build_sets(store, 1, run_seed=0)["select"].to_pylist()
    again = build_sets(store, 1, run_seed=0)["select"].to_pylist()
    b = build_sets(store, 1, run_seed=1)["select"].to_pylist()
    slots = [r["candidate_correct"].index(True) for r in a]
    assert a == again  # deterministic for a run seed
    assert set(slots) == {0, 1, 2}  # the right candidate has no fixed slot
    assert slots != [r["candidate_correct"].index(True) for r in b]  # another seed, another order


def test_sets_equal_a_pandas_version_of_the_rules(tmp_path):
    """The SQL rules against bench/sets.py's independent pandas version, on a random pool where
    all-right, all-wrong and mixed questions occur (ties, both select rules, several iterations)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_sets", Path(__file__).parents[1] / "bench" / "sets.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    store = bench.make_pool(tmp_path, 3000, seed=3)
    for iteration in (1, 2):
        ours, theirs = build_sets(store, iteration, run_seed=5), bench.pandas_sets(store, iteration, run_seed=5)
        assert min(ours[k].num_rows for k in ("sft", "refine", "select")) > 20
        bench.same_sets(ours, theirs)
        assert all(t.schema == SET_SCHEMA for t in ours.values())
