"""The run store: hive-partitioned Parquet under one run folder, queried with DuckDB.

    <run>/<table>/<key>=<value>[/<key>=<value>]/part-0.parquet

A partition is written into a hidden temporary folder beside its final place and renamed into
place, so readers (whose globs skip hidden names) never see half a partition, a crash leaves at
most an ignored temporary folder, and rewriting a partition replaces it instead of adding rows.
Partition keys are also real columns of the file.

Views: `src_<table>` reads every partition of a table (or an empty relation with the table's
schema); the named views users query — samples, positives, negatives, sft_examples,
refine_pairs, select_sets, metrics, … — are the SQL files in `r3v/sql/`, the same SQL the
pipeline runs. They see the pool up to iteration `getvariable('r3v_upto')` when it is set.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from r3v.schema import TABLES
from r3v.step_table import FORMER_NAMES

log = logging.getLogger(__name__)

# Named views in creation order (later ones select from earlier ones).
VIEWS = ("questions", "samples", "positives", "negatives", "pool_stats", "sft_examples", "refine_pairs",
         "select_sets", "sq_questions", "qar_chains", "sets", "metrics", "scaling", "loss_curves", "test_predictions",
         "test_accuracy", "family_accuracy", "level_accuracy")


def sql_dir() -> Path:
    """The named views' SQL: package data in r3v/sql/ (so a wheel install has them), or
    `$R3V_SQL_DIR` to try edited rules on a run without reinstalling."""
    env = os.environ.get("R3V_SQL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "sql"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a hidden temporary file beside it, renamed over
    it): a reader, or a process killed mid-write, never sees half a file. The temporary file's name
    is unique to the writer, so parallel writers of one path never share it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `final`; on success it replaces `final` by renames."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # move the old one aside first, so no reader sees a mix of both
        trash = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def visible_parquet(base: Path) -> list[Path]:
    """Parquet files under `base`, skipping hidden (temporary or replaced) folders."""
    if not base.is_dir():
        return []
    return [f for f in sorted(base.rglob("*.parquet"))
            if not any(x.startswith(".") for x in f.relative_to(base).parts)]


class ReadOnlyError(ValueError):
    """`r3v sql` was given a statement that is not a query."""


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- partitions --------------------------------------------------------------------
    def partition(self, table: str, **keys: object) -> Path:
        p = self.root / table
        for k, v in keys.items():
            p = p / f"{k}={v}"
        return p

    def exists(self, table: str, **keys: object) -> bool:
        return self.partition(table, **keys).is_dir()

    def write(self, table: str, data: pa.Table, **keys: object) -> Path:
        """Atomically write (or replace) one partition; key columns are set to the key values."""
        schema = TABLES[table]
        for k, v in keys.items():
            col = pa.array([v] * data.num_rows, type=schema.field(k).type)
            data = data.set_column(data.schema.get_field_index(k), k, col) if k in data.schema.names \
                else data.append_column(k, col)
        missing = [n for n in schema.names if n not in data.schema.names]
        if missing:
            raise ValueError(f"{table}: data to write lacks columns {missing}")
        data = data.select(schema.names).cast(schema)
        final = self.partition(table, **keys)
        with atomic_dir(final) as tmp:
            pq.write_table(data, tmp / "part-0.parquet")
        return final

    def read(self, table: str, **keys: object) -> pa.Table:
        files = visible_parquet(self.partition(table, **keys))
        if not files:
            return TABLES[table].empty_table()
        return pa.concat_tables([pq.read_table(f, schema=TABLES[table]) for f in files])

    def files(self, table: str) -> list[Path]:
        return visible_parquet(self.root / table)

    # -- SQL ---------------------------------------------------------------------------
    def connect(self, upto: int | None = None, seed: int | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with every view defined over this run's files, confined to the run:
        files are readable only under the run folder (`allowed_directories`, external access off:
        no other path, no URL, no replacement scan of Python objects), extensions are never
        installed or loaded, and the configuration is locked before the connection is returned."""
        root = self.root.resolve()
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                                 "autoload_known_extensions": False,
                                                 "python_enable_replacements": False})
        try:
            con.execute("SET allowed_directories = [" + sql_literal(str(root) + os.sep) + "]")
            con.execute("SET enable_external_access = false")
            if upto is not None:
                con.execute(f"SET VARIABLE r3v_upto = {int(upto)}")
            if seed is not None:
                con.execute(f"SET VARIABLE r3v_seed = {int(seed)}")
            for table, schema in TABLES.items():
                files, broken = [], []
                for f in self.files(table):
                    try:
                        pq.read_metadata(f)
                        files.append(f.resolve())
                    except (OSError, pa.ArrowException) as e:
                        broken.append(f"{f}: {e}")
                if files and not broken:
                    paths = ", ".join(sql_literal(str(f)) for f in files)
                    con.execute(f"CREATE VIEW src_{table} AS SELECT * {_RENAMES.get(table, '')}FROM read_parquet("
                                f"[{paths}], union_by_name = true, hive_partitioning = false)")
                else:
                    con.register(f"_empty_{table}", schema.empty_table())
                    con.execute(f"CREATE VIEW src_{table} AS SELECT * FROM _empty_{table}")
                if broken:  # the table's views fail when read, naming the file; every other view works
                    log.warning("run store: unreadable file(s) in %s: %s", table, "; ".join(broken))
                    msg = sql_literal(f"{table}: unreadable Parquet file {broken[0]}"
                                   + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else "")
                                   + "; rerun the step that writes it (r3v run resumes it)")
                    # every column of the one extra row raises, so no filter or projection prunes it
                    cols = ", ".join(f'CAST(error({msg}) AS {kind}) AS "{name}"'
                                     for name, kind, *_ in con.execute(f"DESCRIBE _empty_{table}").fetchall())
                    con.execute(f"CREATE OR REPLACE VIEW src_{table} AS SELECT * FROM _empty_{table} UNION ALL "
                                f"SELECT {cols} WHERE error({msg}) IS NULL")
            for view in VIEWS:
                con.execute((sql_dir() / f"{view}.sql").read_text())
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con

    def query(self, sql: str, upto: int | None = None, seed: int | None = None) -> pa.Table:
        """Run one read-only query (SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, SUMMARIZE, or
        EXPLAIN [ANALYZE] of one of these) and return its rows; anything else is refused with
        ReadOnlyError before it runs."""
        con = self.connect(upto=upto, seed=seed)
        try:
            check_read_only(con, sql)
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_RENAMES = {"steps": "REPLACE (CASE step " + " ".join(
    f"WHEN {sql_literal(old)} THEN {sql_literal(new)}" for old, new in FORMER_NAMES.items()) + " ELSE step END AS step) "}
"""Step records of an older version's run folder are under the steps' former names: read as the names now."""


_EXPLAIN = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*EXPLAIN(?:\s+ANALY[SZ]E)?\b", re.I | re.S)


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse (ReadOnlyError) anything but a single query. DuckDB's parser decides what a
    statement is; an EXPLAIN is allowed only when what it explains is itself a query, because
    EXPLAIN ANALYZE runs its statement (`EXPLAIN ANALYZE COPY … TO` writes the file)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise ReadOnlyError(f"the statement does not parse: {e}") from None
    if len(statements) != 1:
        raise ReadOnlyError(f"expected one statement, got {len(statements)}: run one query at a time")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        text = statements[0].query
        m = _EXPLAIN.match(text)
        try:
            inner = con.extract_statements(text[m.end():]) if m else []
        except duckdb.Error:
            inner = []
        if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
            raise ReadOnlyError("only EXPLAIN [ANALYZE] of a query is allowed on a run "
                                "(EXPLAIN ANALYZE runs the statement it explains)")
    elif kind != duckdb.StatementType.SELECT:
        raise ReadOnlyError(f"only queries are allowed on a run (got a {kind.name} statement); "
                            f"the run's data is written by r3v alone")
