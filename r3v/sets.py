"""Build the SFT, self-refine, self-select (and self-questioning) sets of an iteration from the pool.

The rules are the views in `data/sql/` (sft_examples, refine_pairs, select_sets), evaluated over
every sample of iterations 1..k (the pool accumulates; sets are rebuilt from it each iteration,
as the R3V authors do). This module only maps their rows to the stored set schema. With
self-questioning on, the `sq` set packs the view `sq_questions` into multi-turn samples
(r3v/selfq.py); with Questioner-Answerer-Reasoner chains in the rollout, the `qar` set holds each
question's latest positive chain (view `qar_chains`), trained as its three roles' turns.
"""

from __future__ import annotations

import pyarrow as pa

from r3v import prompts
from r3v.config import SelfQuestioningConfig
from r3v.schema import SET_SCHEMA
from r3v.store import Store

KINDS = ("sft", "refine", "select")


def build_sets(store: Store, iteration: int, run_seed: int, sq: SelfQuestioningConfig | None = None,
               qar: bool = False) -> dict[str, pa.Table]:
    """{kind: table in SET_SCHEMA} for `iteration`, from the pool up to it; `sq` when enabled, and
    `qar` (the role examples of positive chains, view qar_chains) when the rollout samples chains."""
    con = store.connect(upto=iteration, seed=run_seed)
    try:
        sft = con.sql("SELECT * FROM sft_examples ORDER BY question_id").to_arrow_table().to_pylist()
        ref = con.sql("SELECT * FROM refine_pairs ORDER BY question_id").to_arrow_table().to_pylist()
        sel = con.sql("SELECT * FROM select_sets ORDER BY question_id, rule").to_arrow_table().to_pylist()
        chains = (con.sql("SELECT * FROM qar_chains ORDER BY question_id").to_arrow_table().to_pylist()
                  if qar else [])
    finally:
        con.close()
    rows: dict[str, list[dict]] = {k: [] for k in KINDS}
    for r in sft:
        rows["sft"].append(dict(example_id=f"sft#{r['question_id']}", question_id=r["question_id"],
                                target=r["target"], source_ids=r["source_ids"]))
    for r in ref:
        rows["refine"].append(dict(example_id=f"refine#{r['question_id']}", question_id=r["question_id"],
                                   negative=r["negative"], target=r["target"], source_ids=r["source_ids"]))
    for r in sel:
        rows["select"].append(dict(
            example_id=f"select#{r['question_id']}#{r['rule']}", question_id=r["question_id"],
            candidates=r["candidates"], candidate_correct=r["candidate_correct"],
            target=prompts.answer_target(r["gold"]), source_ids=r["source_ids"]))
    out = {}
    for kind in KINDS:
        for r in rows[kind]:
            r.update(iteration=iteration, kind=kind)
        out[kind] = pa.Table.from_pylist(rows[kind], schema=SET_SCHEMA)
    if qar:
        out["qar"] = pa.Table.from_pylist([dict(
            example_id=f"qar#{r['question_id']}", iteration=iteration, kind="qar", question_id=r["question_id"],
            chain=r["chain"], target=r["target"], source_ids=r["source_ids"]) for r in chains], schema=SET_SCHEMA)
    if sq is not None and sq.enabled:
        from r3v.selfq import build_sq_set

        out["sq"] = pa.Table.from_pylist(build_sq_set(store, iteration, run_seed, sq), schema=SET_SCHEMA)
    return out
