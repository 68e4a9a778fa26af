"""Build the SFT, self-refine, self-select (and self-questioning) sets of an iteration from the pool.

The rules are the views in `r3v/sql/` (sft_examples, refine_pairs, select_sets), evaluated over
every sample of iterations 1..k (the pool accumulates; sets are rebuilt from it each iteration,
as the R3V authors do). The queries below only rename the views' columns to the stored set schema;
DuckDB hands the result over as Arrow, so no row passes through Python (bench/sets.py: 1M pooled
samples). With self-questioning on, the `sq` set packs the view `sq_questions` into multi-turn
samples (r3v/sq/selfq.py); with Questioner-Answerer-Reasoner chains in the rollout, the `qar` set
holds each question's latest positive chain (view `qar_chains`), trained as its three roles' turns.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from r3v import prompts
from r3v.config import SelfQuestioningConfig
from r3v.schema import SET_SCHEMA
from r3v.sq.selfq import build_sq_set
from r3v.store import Store, sql_literal

SET_KINDS = ("sft", "refine", "select")

# kind -> the query that gives its rows in SET_SCHEMA's column names (missing columns are null);
# {stamp} is the iteration and kind columns
_QUERIES = {
    "sft": """SELECT 'sft#' || question_id AS example_id, {stamp}, question_id, target, source_ids
              FROM sft_examples ORDER BY question_id""",
    "refine": """SELECT 'refine#' || question_id AS example_id, {stamp}, question_id, negative, target, source_ids
                 FROM refine_pairs ORDER BY question_id""",
    "select": f"""SELECT 'select#' || question_id || '#' || rule AS example_id, {{stamp}}, question_id, candidates,
                         candidate_correct, {sql_literal(prompts.ANSWER_PREFIX)} || gold AS target, source_ids
                  FROM select_sets ORDER BY question_id, rule""",
    "qar": """SELECT 'qar#' || question_id AS example_id, {stamp}, question_id, chain, target, source_ids
              FROM qar_chains ORDER BY question_id""",
}


def _as_set(table: pa.Table) -> pa.Table:
    """`table` (a query's result) in SET_SCHEMA, the columns it lacks null."""
    n = table.num_rows
    cols = []
    for field in SET_SCHEMA:
        if field.name in table.column_names:
            cols.append(table[field.name].cast(field.type))
        else:
            cols.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(cols, schema=SET_SCHEMA)


def iter_sets(store: Store, iteration: int, run_seed: int, sq: SelfQuestioningConfig | None = None,
              qar: bool = False) -> Iterator[tuple[str, pa.Table]]:
    """(kind, table in SET_SCHEMA) for `iteration`, from the pool up to it, one kind at a time: a
    caller that writes each set and lets it go (the build_sets step) holds one set's rows at most.
    `sq` when enabled, and `qar` (the role examples of positive chains, view qar_chains) when the
    rollout samples chains."""
    kinds = SET_KINDS + (("qar",) if qar else ())
    con = store.connect(upto=iteration, seed=run_seed)
    try:
        for kind in kinds:
            query = _QUERIES[kind].format(stamp=f"{int(iteration)} AS iteration, '{kind}' AS kind")
            yield kind, _as_set(con.sql(query).to_arrow_table())
    finally:
        con.close()
    if sq is not None and sq.enabled:
        yield "sq", pa.Table.from_pylist(build_sq_set(store, iteration, run_seed, sq), schema=SET_SCHEMA)


def build_sets(store: Store, iteration: int, run_seed: int, sq: SelfQuestioningConfig | None = None,
               qar: bool = False) -> dict[str, pa.Table]:
    """{kind: table in SET_SCHEMA} for `iteration`, every set at once (see iter_sets)."""
    return dict(iter_sets(store, iteration, run_seed, sq, qar))


def write_sets(store: Store, iteration: int, run_seed: int, sq: SelfQuestioningConfig | None = None,
               qar: bool = False) -> dict[str, int]:
    """Build the sets of `iteration` into the store (sets/iteration=k/kind=*), each written and let
    go before the next is built (see iter_sets): {kind: rows}."""
    sizes = {}
    for kind, table in iter_sets(store, iteration, run_seed, sq, qar):
        store.write("sets", table, iteration=iteration, kind=kind)
        sizes[kind] = table.num_rows
        del table  # written: let it go before the next set is built
    return sizes
