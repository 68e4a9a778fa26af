"""Store: atomic partitions, idempotent rewrites, partition keys as columns, read-only SQL."""

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from r3v.schema import STEP_SCHEMA
from r3v.store import ReadOnlyError, Store, atomic_dir


def _steps(n: int) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist([{"seconds": float(i), "finished_at": now, "info": "{}"} for i in range(n)],
                                schema=pa.schema([("seconds", pa.float64()),
                                                  ("finished_at", pa.timestamp("us", tz="UTC")),
                                                  ("info", pa.string())]))


def test_partition_layout_and_key_column(tmp_path):
    store = Store(tmp_path)
    path = store.write("steps", _steps(2), iteration=3, step="judge")
    assert path == tmp_path / "steps" / "iteration=3" / "step=judge"
    t = store.read("steps", iteration=3, step="judge")
    assert t.schema == STEP_SCHEMA
    assert t["iteration"].to_pylist() == [3, 3] and t["step"].to_pylist() == ["judge", "judge"]


def test_missing_column_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"steps: data to write lacks columns \['finished_at', 'info'\]"):
        Store(tmp_path).write("steps", pa.table({"seconds": [1.0]}), iteration=1, step="x")


def test_rewrite_replaces_never_duplicates(tmp_path):
    store = Store(tmp_path)
    for _ in range(3):
        store.write("steps", _steps(2), iteration=1, step="x")
    assert store.query("SELECT count(*) AS n FROM src_steps")["n"][0].as_py() == 2
    assert [p.name for p in (tmp_path / "steps" / "iteration=1").iterdir()] == ["step=x"]


def test_crash_leaves_no_half_partition(tmp_path):
    store = Store(tmp_path)
    store.write("steps", _steps(1), iteration=1, step="x")
    final = store.partition("steps", iteration=2, step="x")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "part-0.parquet").write_bytes(b"half a file")
            raise RuntimeError("killed mid-write")
    assert not final.exists()
    # a temporary folder left by a hard kill is hidden from every view
    leftover = final.parent / ".tmp-step=x-dead"
    leftover.mkdir(parents=True)
    (leftover / "part-0.parquet").write_bytes(b"garbage")
    assert store.query("SELECT count(*) AS n FROM src_steps")["n"][0].as_py() == 1


def test_sql_is_read_only(tmp_path):
    store = Store(tmp_path)
    for stmt in ["CREATE TABLE t AS SELECT 1", "COPY (SELECT 1) TO 'x.csv'", "DROP VIEW samples",
                 "SELECT 1; SELECT 2"]:
        with pytest.raises(ReadOnlyError):
            store.query(stmt)
    assert store.query("SELECT count(*) AS n FROM samples")["n"][0].as_py() == 0


def test_sql_csv_writes_nested_columns_as_json():
    import pyarrow as pa

    from r3v.cli import _flat_for_csv

    t = pa.table({"n": [1, 2], "l": [[1, 2], None], "s": [{"a": 1}, {"a": None}],
                  "m": pa.array([[("x", 1.5)], []], pa.map_(pa.string(), pa.float64()))})
    flat = _flat_for_csv(t)
    assert flat.column("n").to_pylist() == [1, 2]
    assert flat.column("l").to_pylist() == ["[1, 2]", None]
    assert flat.column("s").to_pylist() == ['{"a": 1}', '{"a": null}']
    assert flat.column("m").to_pylist() == ['{"x": 1.5}', "{}"]
