"""Set building at pool scale: r3v's build_sets (the SQL views, Arrow out of DuckDB) against a
pandas version of the same rules, side by side on the same pool, each in its own process so that
peak memory is its own. The pandas result is checked equal to r3v's before any time is printed.

    .venv/bin/python bench/sets.py [--samples 1000000] [--repeats 3] [--out docs/bench/sets.json]

The pool: `--samples` judged rationales over two iterations, N=8 samples per question per
iteration, each question right with its own rate (so all-right, all-wrong and mixed questions
all occur, as in a real pool). "views" is the reference for memory: the three set views read
into Arrow and nothing else. "r3v" is `build_sets` (every set in memory at once, as a caller of
the function holds them); "step" is what the build_sets step does (`write_sets`: each set written
to the store, as Parquet, as it is built, then let go), timed with its writes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from r3v import prompts  # noqa: E402
from r3v.schema import SAMPLE_SCHEMA, SET_SCHEMA  # noqa: E402
from r3v.sets import SET_KINDS, build_sets, write_sets  # noqa: E402
from r3v.store import Store  # noqa: E402

N_PER_ITERATION = 8
ITERATIONS = 2


def make_pool(root: Path, samples: int, seed: int = 0) -> Store:
    """A run store holding `samples` judged samples (samples/iteration=1..2/)."""
    rng = np.random.default_rng(seed)
    questions = max(1, samples // (N_PER_ITERATION * ITERATIONS))
    rate = rng.random(questions)
    store = Store(root)
    for it in range(1, ITERATIONS + 1):
        q = np.repeat(np.arange(questions), N_PER_ITERATION)
        idx = np.tile(np.arange(N_PER_ITERATION), questions)
        correct = rng.random(q.size) < rate[q]
        qid = np.char.add("q", q.astype(str))
        sid = np.char.add(np.char.add(qid, f"#{it}#"), idx.astype(str))
        n = q.size
        ans = np.where(correct, "7", "0")
        bare = rng.random(n) < 0.1  # a bare `Answer: X`, no reasoning: never an SFT target or y+
        table = pa.table({
            "shard": pa.array(np.zeros(n, np.int32)), "sample_id": pa.array(sid), "question_id": pa.array(qid),
            "iteration": pa.array(np.full(n, it, np.int32)), "sample_index": pa.array(idx.astype(np.int32)),
            "seed": pa.array(np.zeros(n, np.int64)), "prompt_kind": pa.array(["cot"] * n),
            "rationale": pa.array(np.where(bare, np.char.add(np.char.add("Answer: ", ans), np.char.add(" #", sid)),
                                           np.char.add(np.char.add("There are 3 and 4 objects, sample ", sid),
                                                       np.char.add(". Answer: ", ans)))),
            "finished": pa.array(np.ones(n, bool)), "model_ref": pa.array(["m@none"] * n),
            "prompt_tokens": pa.array(np.full(n, 40, np.int32)), "completion_tokens": pa.array(np.full(n, 20, np.int32)),
            "seconds": pa.array(np.zeros(n)), "chain": pa.nulls(n, SAMPLE_SCHEMA.field("chain").type),
            "answer": pa.array(ans), "gold": pa.array(["7"] * n), "correct": pa.array(correct),
            "judge_reason": pa.array(np.where(correct, "numeric", "mismatch")), "has_rationale": pa.array(~bare),
        }).cast(SAMPLE_SCHEMA)
        store.write("samples", table, iteration=it)
    return store


def pandas_sets(store: Store, iteration: int, run_seed: int) -> dict[str, pa.Table]:
    """The rules of r3v/sql/{sft_examples,refine_pairs,select_sets}.sql, in pandas."""
    import pandas as pd

    df = pd.concat([pd.read_parquet(f) for f in store.files("samples")], ignore_index=True)
    df = df[df["iteration"] <= iteration]
    df = df.sort_values(["question_id", "correct", "iteration", "sample_index"],
                        ascending=[True, True, False, True], kind="stable")
    df["rk"] = df.groupby(["question_id", "correct"]).cumcount() + 1
    pos, neg = df[df["correct"]], df[~df["correct"]]
    out = {}
    # a positive is a rationale: the SFT target and y+ are the latest positive that has one
    reasoned = pos[pos["has_rationale"]].copy()
    reasoned["rk"] = reasoned.groupby("question_id").cumcount() + 1
    sft = reasoned[reasoned["rk"] == 1]
    out["sft"] = pd.DataFrame({"example_id": "sft#" + sft["question_id"], "question_id": sft["question_id"],
                               "target": sft["rationale"], "source_ids": [[s] for s in sft["sample_id"]]})
    p1, n1 = reasoned[reasoned["rk"] == 1], neg[neg["rk"] == 1]
    ref = n1.merge(p1, on="question_id", suffixes=("_n", "_p"))
    out["refine"] = pd.DataFrame({
        "example_id": "refine#" + ref["question_id"], "question_id": ref["question_id"],
        "negative": ref["rationale_n"], "target": ref["rationale_p"],
        "source_ids": [[a, b] for a, b in zip(ref["sample_id_n"], ref["sample_id_p"])]})
    counts = df.groupby("question_id")["correct"].agg(n_pos="sum", n="size")
    counts["n_neg"] = counts["n"] - counts["n_pos"]
    df = df.join(counts[["n_pos", "n_neg"]], on="question_id")
    picks = pd.concat([
        df[(df.n_pos >= 2) & (df.n_neg >= 1) & ((df.correct & (df.rk <= 2)) | (~df.correct & (df.rk == 1)))]
        .assign(rule="p2n1"),
        df[(df.n_pos >= 1) & (df.n_neg >= 2) & ((df.correct & (df.rk == 1)) | (~df.correct & (df.rk <= 2)))]
        .assign(rule="p1n2")], ignore_index=True)
    picks["key"] = [hashlib.md5(f"{run_seed}#{q}#{r}#{s}".encode()).hexdigest()
                    for q, r, s in zip(picks["question_id"], picks["rule"], picks["sample_id"])]
    picks = picks.sort_values(["question_id", "rule", "key"])
    g = picks.groupby(["question_id", "rule"], sort=True)
    sel = g.agg(candidates=("rationale", list), candidate_correct=("correct", list),
                source_ids=("sample_id", list), gold=("gold", "first")).reset_index()
    out["select"] = pd.DataFrame({
        "example_id": "select#" + sel["question_id"] + "#" + sel["rule"], "question_id": sel["question_id"],
        "candidates": sel["candidates"], "candidate_correct": sel["candidate_correct"],
        "target": prompts.ANSWER_PREFIX + sel["gold"], "source_ids": sel["source_ids"]})
    tables = {}
    for kind, frame in out.items():
        frame = frame.sort_values("example_id" if kind == "select" else "question_id", kind="stable")
        frame = frame.assign(iteration=iteration, kind=kind)
        tables[kind] = pa.Table.from_pandas(frame.reset_index(drop=True), schema=pa.schema(
            [f for f in SET_SCHEMA if f.name in frame.columns]), preserve_index=False)
    return tables


def views_only(store: Store, iteration: int, run_seed: int) -> dict[str, pa.Table]:
    con = store.connect(upto=iteration, seed=run_seed)
    try:
        return {v: con.sql(f"SELECT * FROM {v}").to_arrow_table() for v in ("sft_examples", "refine_pairs", "select_sets")}
    finally:
        con.close()


ARMS = {"r3v": lambda s, k, seed: build_sets(s, k, seed), "step": write_sets, "pandas": pandas_sets, "views": views_only}


def _run(arm: str, root: str, repeats: int, queue) -> None:
    store, times, result = Store(root), [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = ARMS[arm](store, ITERATIONS, 0)
        times.append(time.perf_counter() - t0)
    rows = {k: t if isinstance(t, int) else t.num_rows for k, t in result.items()}
    queue.put(dict(seconds=min(times), all_seconds=times, rows=rows, peak_rss_mb=_peak_rss_mb()))


def _peak_rss_mb() -> float:
    # VmHWM is this process image's own peak (ru_maxrss would carry over the parent's from before exec)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure(arm: str, root: Path, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_run, args=(arm, str(root), repeats, queue))
    p.start()
    out = queue.get()
    p.join()
    return out


def same_sets(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    """Raise AssertionError naming the first kind and column where the two builds differ."""
    for kind in SET_KINDS:
        ta, tb = a[kind], b[kind]
        assert ta.num_rows == tb.num_rows, f"{kind}: {ta.num_rows} rows vs {tb.num_rows}"
        for name in tb.column_names:
            assert ta[name].to_pylist() == tb[name].to_pylist(), f"{kind}.{name} differs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = make_pool(Path(tmp), args.samples)
        print(f"pool: {args.samples} samples written in {time.perf_counter() - t0:.1f} s", flush=True)
        same_sets(build_sets(store, ITERATIONS, 0), pandas_sets(store, ITERATIONS, 0))
        print("pandas sets == r3v sets", flush=True)
        res = {arm: measure(arm, Path(tmp), args.repeats) for arm in ARMS}
    for arm, r in res.items():
        print(f"{arm:7s} {r['seconds']:6.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB  rows {r['rows']}")
    ratio = res["pandas"]["seconds"] / res["r3v"]["seconds"]
    print(f"pandas / r3v time: {ratio:.2f}x;  peak / views peak: r3v "
          f"{res['r3v']['peak_rss_mb'] / res['views']['peak_rss_mb']:.2f}, step "
          f"{res['step']['peak_rss_mb'] / res['views']['peak_rss_mb']:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(samples=args.samples, repeats=args.repeats, arms=res,
                                            pandas_over_r3v=ratio), indent=1) + "\n")


if __name__ == "__main__":
    main()
