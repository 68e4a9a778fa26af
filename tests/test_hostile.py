"""The catalogue of hostile-but-realistic input (issue 20): every case is refused with a message
that names what was wrong, and nothing else is lost.

Sections: `r3v sql` confined to its run; configs checked at load time (and a changed config on
resume); bad records named; the watchdog that leaves no orphaned process after a SIGKILL. The
store-as-truth resume cases need a trained run and live in tests/test_resume_truth.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from r3v.store import ReadOnlyError, Store

README = Path(__file__).resolve().parents[1] / "README.md"


# -- r3v sql: one read-only query, confined to the run folder ---------------------------------------------


def _steps_table(n: int = 1) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist([{"seconds": float(i), "finished_at": now, "info": "{}"} for i in range(n)],
                                schema=pa.schema([("seconds", pa.float64()), ("finished_at", pa.timestamp("us", tz="UTC")),
                                                  ("info", pa.string())]))


@pytest.fixture
def run_store(tmp_path):
    """A run folder with one partition, and beside it another run and a secret, both off limits."""
    run = tmp_path / "run"
    store = Store(run)
    store.write("steps", _steps_table(), iteration=1, step="judge")
    (run / "config.yaml").write_text("{}\n")  # what `r3v sql` looks for in a run folder
    other = tmp_path / "run2"  # shares the run folder's name as a prefix: must not be readable
    Store(other).write("steps", _steps_table(5), iteration=1, step="judge")
    (tmp_path / "secret.txt").write_text("secret")
    return store, tmp_path


def _part(store: Store) -> str:
    return str(store.partition("steps", iteration=1, step="judge").resolve() / "part-0.parquet")


HOSTILE = [
    # writes and DDL
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("CREATE VIEW metrics2 AS SELECT 1", "CREATE"),
    ("CREATE OR REPLACE VIEW samples AS SELECT 1 AS x", "CREATE"),
    ("DROP VIEW samples", "DROP"),
    ("INSERT INTO src_steps SELECT * FROM src_steps", "INSERT"),
    ("DELETE FROM src_steps", "DELETE"),
    ("UPDATE src_steps SET seconds = 0", "UPDATE"),
    ("ALTER VIEW samples RENAME TO s", "ALTER"),
    ("CREATE MACRO m(x) AS x", "CREATE"),
    ("CREATE SEQUENCE s", "CREATE"),
    # files written
    ("COPY (SELECT * FROM src_steps) TO '{part}' (FORMAT parquet)", "COPY"),
    ("COPY src_steps TO '{run}/x.csv'", "COPY"),
    ("COPY src_steps FROM '{run}/x.csv'", "COPY"),
    ("EXPORT DATABASE '{run}/dump'", "EXPORT"),
    ("EXPLAIN ANALYZE COPY (SELECT * FROM src_steps) TO '{part}' (FORMAT parquet)", "EXPLAIN"),
    ("explain  analyse\n COPY (SELECT 1) TO '{run}/e.parquet'", "EXPLAIN"),
    ("/* c */ EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "EXPLAIN"),
    ("EXPLAIN (FORMAT json) COPY (SELECT 1) TO '{run}/e.parquet'", "EXPLAIN"),
    # other databases, extensions, settings
    ("ATTACH '{run}/db.duckdb' AS d", "ATTACH"),
    ("DETACH memory", "DETACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("FORCE INSTALL httpfs", "LOAD"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("RESET lock_configuration", "SET"),
    ("SET VARIABLE r3v_upto = 99", "SET"),
    ("SET allowed_directories = ['/']", "SET"),
    ("CALL pragma_version()", "CALL"),
    ("CHECKPOINT", "CALL"),
    ("VACUUM", "VACUUM"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("USE memory", "SET"),
    ("PREPARE p AS SELECT 1", "PREPARE"),
    # several statements, one of them harmful
    ("SELECT 1; DROP VIEW samples", "expected one statement"),
    ("SELECT 1; SELECT 2", "expected one statement"),
    ("SELECT * FROM query('COPY (SELECT 1) TO ''{run}/q.parquet''')", "single SELECT"),
    # readers outside the run: files, other runs, globs, URLs
    ("SELECT * FROM read_text('{tmp}/secret.txt')", "Permission"),
    ("SELECT * FROM read_blob('{tmp}/secret.txt')", "Permission"),
    ("SELECT * FROM read_text('{run}/../secret.txt')", "Permission"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
    ("SELECT * FROM read_csv_auto('/etc/hostname')", "Permission"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "Permission"),
    ("SELECT * FROM read_json('/etc/os-release')", "Permission"),
    ("SELECT * FROM '/etc/passwd'", ""),
    ("SELECT * FROM read_parquet('{tmp}/run2/steps/*/*/*.parquet')", "Permission"),
    ("SELECT * FROM parquet_metadata('{tmp}/run2/steps/iteration=1/step=judge/part-0.parquet')", "Permission"),
    ("SELECT * FROM glob('/root/*')", "Permission"),
    ("SELECT * FROM glob('{tmp}/*')", "Permission"),
    ("SELECT * FROM 'https://example.com/data.parquet'", "Permission"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "Permission"),
    ("SELECT * FROM duckdb_extensions()", "Permission"),
    ("SELECT * FROM sqlite_scan('{tmp}/x.db', 't')", ""),
]


@pytest.mark.parametrize(("statement", "says"), HOSTILE, ids=[h[0][:48] for h in HOSTILE])
def test_sql_refuses_hostile_statement(run_store, statement, says):
    import duckdb

    store, tmp = run_store
    sql = statement.format(part=_part(store), run=store.root.resolve(), tmp=tmp.resolve())
    before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    with pytest.raises((ReadOnlyError, duckdb.Error), match=re.escape(says) if says else None):
        store.query(sql)
    assert sorted(p.relative_to(tmp) for p in tmp.rglob("*")) == before  # nothing written anywhere
    assert store.query("SELECT count(*) AS n FROM src_steps")["n"][0].as_py() == 1  # the run's data intact


def test_sql_reads_inside_its_run(run_store):
    store, _ = run_store
    assert store.query(f"SELECT count(*) AS n FROM read_parquet('{_part(store)}')")["n"][0].as_py() == 1
    assert store.query(f"SELECT count(*) AS n FROM glob('{store.root.resolve()}/steps/**')")["n"][0].as_py() == 1
    assert store.query("EXPLAIN ANALYZE SELECT * FROM metrics").num_rows == 1
    assert store.query("DESCRIBE samples").num_rows > 5
    assert store.query("FROM src_steps").num_rows == 1


def _readme_queries() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Inspect a run with SQL"):]
    section = section[:section.index("\n## ", 4)]
    return re.findall(r'^r3v sql runs/\S+ "(.+?)"', section, flags=re.M)


def test_readme_queries_keep_working(run_store):
    store, _ = run_store
    queries = _readme_queries()
    assert len(queries) >= 5
    for q in queries:
        store.query(q)


def test_library_views_are_confined_too(run_store):
    """The connection the pipeline builds its sets from has the same limits as `r3v sql`."""
    import duckdb

    store, tmp = run_store
    con = store.connect()
    try:
        with pytest.raises(duckdb.Error, match="Permission"):
            con.sql(f"SELECT * FROM read_text('{tmp.resolve()}/secret.txt')").fetchall()
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()


def test_truncated_file_fails_only_its_views(run_store):
    """A truncated Parquet file in a run: the views over its table fail naming the file; the rest work."""
    store, _ = run_store
    path = store.write("samples", pa.Table.from_pylist([], schema=_sample_schema()), iteration=1)
    f = path / "part-0.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(Exception, match=r"samples: unreadable Parquet file .*part-0\.parquet"):
        store.query("SELECT count(*) FROM positives")
    assert store.query("SELECT count(*) AS n FROM src_steps")["n"][0].as_py() == 1
    assert store.query("SELECT * FROM loss_curves").num_rows == 0  # views over other tables still work


def _sample_schema():
    from r3v.schema import TABLES

    return TABLES["samples"]


def test_cli_sql_refusal_is_one_line(run_store, capsys):
    from r3v.cli import main

    store, tmp = run_store
    assert main(["sql", str(store.root), f"SELECT * FROM read_text('{tmp}/secret.txt')"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r3v sql: ") and "secret.txt" in err and "Traceback" not in err


# -- configs: checked at load time, one line, the key named ------------------------------------------------


def _bad_value(text: str):
    """A value just outside a RANGES rule's range (">= 1" -> 0, "> 0" -> 0, "in (0, 1]" -> 0 and 1.5)."""
    m = re.fullmatch(r">= (\S+)", text)
    if m:
        return [int(float(m[1])) - 1]
    m = re.fullmatch(r"> (\S+)", text)
    if m:
        return [float(m[1]), -1.0]
    m = re.fullmatch(r"in ([\[(])(\S+), (\S+)([\])])", text)
    lo, hi = float(m[2]), float(m[3])
    return [lo if m[1] == "(" else lo - 0.5, hi if m[4] == ")" else hi + 0.5]


def _range_cases():
    from r3v.config import RANGES, Config, _get

    return [(key, int(v) if isinstance(_get(Config(), key), int) else v)
            for key, (_, text) in RANGES.items() for v in _bad_value(text)]


@pytest.mark.parametrize(("key", "value"), _range_cases(), ids=[f"{k}={v}" for k, v in _range_cases()])
def test_every_range_rule(key, value):
    from r3v.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape(f"{key}={value!r}")):
        load_config(None, [f"{key}={value}"])


def test_every_range_key_exists_and_the_defaults_pass():
    from r3v.config import RANGES, Config, _get, validate

    validate(Config())
    for key in RANGES:
        _get(Config(), key)  # AttributeError if a rule names a key that is not there


@pytest.mark.parametrize("overrides", [
    ["data.embedded.min_objects=4", "data.embedded.max_objects=3"],
    ["model.embedded.patch_size=7"],
    ["model.embedded.text_heads=3"],
    ["model.embedded.vision_heads=5"],
    ["data.source=files"],
], ids=["objects", "patch", "text_heads", "vision_heads", "files_without_paths"])
def test_cross_field_rules(overrides):
    from r3v.config import ConfigError, load_config

    key = overrides[-1].split("=")[0].rsplit(".", 1)[-1] if overrides != ["data.source=files"] else "train_split.path"
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, overrides)


@pytest.mark.parametrize("name", ["", " x", "x ", ".", "..", "../escape", "a/b", "/abs", ".hidden", "a\\b", "tab\there"])
def test_run_name_is_a_plain_folder_name(name):
    from r3v.config import ConfigError

    with pytest.raises(ConfigError, match="run.name"):
        _load_name(name)


def _load_name(name):
    from r3v.config import config_from_dict

    return config_from_dict({"run": {"name": name}})


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_refused(value):
    from r3v.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="train.max_grad_norm"):
        load_config(None, [f"train.max_grad_norm={value}"])


def test_yaml_duplicate_key_is_refused_with_its_line(tmp_path):
    from r3v.config import ConfigError, load_config

    f = tmp_path / "c.yaml"
    f.write_text("run:\n  name: a\ntrain:\n  lr: 1.0e-3\n  lr: 1.0e-4\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:5:3: duplicate key 'lr' (first at line 4)")):
        load_config(f)
    f.write_text("run:\n  name: a\nrun:\n  seed: 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:3:1: duplicate key 'run'")):
        load_config(f)


def test_yaml_syntax_error_is_file_line_col(tmp_path):
    from r3v.config import ConfigError, load_config

    f = tmp_path / "c.yaml"
    f.write_text("run:\n  name: [a\ntrain:\n  lr: 1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(f))}:\d+:\d+: "):
        load_config(f)
    f.write_bytes(b"run:\n  name: \xff\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}: not UTF-8")):
        load_config(f)


def test_range_error_names_the_file(tmp_path):
    from r3v.config import ConfigError, load_config

    f = tmp_path / "c.yaml"
    f.write_text("rollout:\n  n: 0\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}: rollout.n=0 must be >= 1")):
        load_config(f)


@pytest.mark.parametrize("args", [
    ["run", "rollout.n=0"], ["run", "train.batch_size=0"], ["run", "train.lr=-1"], ["run", "rollout.temperature=-1"],
    ["run", "run.iterations=-1"], ["run", "run.name="], ["run", "no.such.key=1"], ["run", "train.lr=[1"],
    ["experiment", "rollout.top_p=2"], ["build-model", "model.embedded.patch_size=7"],
])
def test_cli_config_errors_are_one_line_exit_2(args, capsys):
    from r3v.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"r3v {args[0]}: ") and "Traceback" not in err


def test_cli_debug_shows_the_traceback():
    from r3v.cli import main
    from r3v.config import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "run", "rollout.n=0"])


# -- a changed config and a run that has produced nothing (yet) --------------------------------------------


def _finish(run_dir: Path, step: str) -> None:
    Store(run_dir).write("steps", _steps_table(), iteration=0, step=step)


def test_changed_config_adopted_while_nothing_is_finished(tmp_path):
    from r3v.config import load_config
    from r3v.run import Run, init_run

    base = [f"run.root={tmp_path}", "run.name=r"]
    run_dir = init_run(load_config(None, base + ["train.lr=0.5"]))
    fixed = load_config(None, base + ["train.lr=1e-4"])
    assert init_run(fixed) == run_dir  # nothing finished: the fixed value is taken
    run = Run.open(run_dir)
    assert run.cfg.train.lr == 1e-4 and run.meta["config_hash"] == fixed.hash()


def test_changed_config_after_prepare_only_outside_what_prepare_read(tmp_path):
    from r3v.config import load_config
    from r3v.run import Run, RunConfigMismatch, init_run

    base = [f"run.root={tmp_path}", "run.name=r"]
    run_dir = init_run(load_config(None, base))
    _finish(run_dir, "prepare")
    init_run(load_config(None, base + ["warmup.lr=3e-3"]))  # the warm-up has not run: taken
    assert Run.open(run_dir).cfg.warmup.lr == 3e-3
    with pytest.raises(RunConfigMismatch, match=r"data.embedded.n_train: 800 -> 801.*0/prepare"):
        init_run(load_config(None, base + ["warmup.lr=3e-3", "data.embedded.n_train=801"]))


def test_changed_config_refused_once_a_result_depends_on_it(tmp_path):
    from r3v.config import load_config
    from r3v.run import RunConfigMismatch, init_run

    base = [f"run.root={tmp_path}", "run.name=r"]
    run_dir = init_run(load_config(None, base))
    _finish(run_dir, "prepare")
    _finish(run_dir, "warmup")
    with pytest.raises(RunConfigMismatch, match=r"train.lr: 0.001 -> 0.0001"):
        init_run(load_config(None, base + ["train.lr=1e-4"]))
    init_run(load_config(None, base + ["run.torch_threads=1", "orchestration.shard_size=3"]))  # execution keys: fine


def test_changed_config_refused_with_a_half_done_training(tmp_path):
    from r3v.config import load_config
    from r3v.run import RunConfigMismatch, init_run

    base = [f"run.root={tmp_path}", "run.name=r"]
    run_dir = init_run(load_config(None, base))
    (run_dir / "train_state" / "warmup").mkdir(parents=True)
    with pytest.raises(RunConfigMismatch, match="train_state"):
        init_run(load_config(None, base + ["warmup.lr=3e-3"]))


def test_mid_training_state_under_the_former_step_name_is_moved_and_resumed(tmp_path, caplog):
    """A warm-up killed mid-training by an older version left its checkpoint in train_state/seed: the
    stage finds it under its name now (moved, with a warning), so it resumes instead of starting over."""
    from r3v.config import load_config
    from r3v.run import Run, init_run
    from r3v.trainer.stages import state_dir

    run_dir = init_run(load_config(None, [f"run.root={tmp_path}", "run.name=r"]))
    (run_dir / "train_state" / "seed" / "checkpoint").mkdir(parents=True)
    (run_dir / "train_state" / "seed" / "checkpoint" / "step.json").write_text('{"step": 50}')
    with caplog.at_level("WARNING"):
        folder = state_dir(Run.open(run_dir), "warmup", 0)
    assert folder == run_dir / "train_state" / "warmup" and not (run_dir / "train_state" / "seed").exists()
    assert (folder / "checkpoint" / "step.json").read_text() == '{"step": 50}'
    assert "under its former name seed" in caplog.text
    assert state_dir(Run.open(run_dir), "train", 1) == run_dir / "train_state" / "iteration=1"


# -- bad records: named (file, row or line, id, reason), skippable with skip_bad_rows -----------------------


def _png(size=(8, 8)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height (a decompression bomb's shape), a few bytes long."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    (d / "img").mkdir(parents=True)
    (d / "img" / "a.png").write_bytes(_png())
    (d / "img" / "bomb.png").write_bytes(_huge_png(20000, 20000))  # 400 megapixels
    (tmp_path / "outside.png").write_bytes(_png())
    (d / "img" / "link.png").symlink_to(tmp_path / "outside.png")
    return d


def _row(i, **kw):
    return {"id": f"q{i}", "image": "img/a.png", "question": "How many?", "answer": "3", **kw}


def _write_jsonl(path: Path, rows, raw_lines: dict[int, bytes] | None = None, bom: bool = False) -> Path:
    import json

    lines = [json.dumps(r).encode() for r in rows]
    for i, raw in (raw_lines or {}).items():
        lines[i] = raw
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    return path


def _load(path: Path, fmt="jsonl", skip=False, **kw):
    from r3v.config import SourceConfig
    from r3v.datasets import load_source

    return load_source(SourceConfig(path=str(path), format=fmt), "train", skip_bad_rows=skip, **kw)


BAD_RECORDS = [  # (row 1 of three: what it holds, what the error says)
    ({"image": "img/bomb.png"}, "over data.max_image_pixels"),  # 400 megapixels: refused, never decoded
    ({"image": "../outside.png"}, "resolves outside the image folder"),
    ({"image": "img/link.png"}, "resolves outside the image folder"),  # a symlink pointing out
    ({"image": "ABSOLUTE"}, "resolves outside the image folder"),
    ({"answer": [1, 2]}, "answer (column 'answer') is a list"),
    ({"answer": {"v": 1}}, "answer (column 'answer') is a dict"),
    ({"answer": True}, "is a boolean"),
    ({"answer": float("nan")}, "is nan"),
    ({"answer": float("inf")}, "is inf"),
    ({"id": [1]}, "id is a list"),
    ({"question": 7}, "question is a int"),
    ({"rationale": 5}, "rationale is a int"),
    ({"metadata": [1]}, "metadata is a list"),
]


@pytest.mark.parametrize(("bad", "says"), BAD_RECORDS, ids=[s[:40] for _, s in BAD_RECORDS])
def test_bad_record_named_and_skippable(data_dir, bad, says):
    from r3v.datasets import BadRowError

    if bad.get("image") == "ABSOLUTE":
        bad = {"image": str(data_dir.parent / "outside.png")}
    f = _write_jsonl(data_dir / "d.jsonl", [_row(0), _row(1, **bad), _row(2)])
    with pytest.raises(BadRowError, match=re.escape(says)) as e:
        _load(f)
    assert f"{f}: row 1" in str(e.value)
    table, report = _load(f, skip=True)
    assert table["id"].to_pylist() == ["q0", "q2"] and report.kept == 2 and report.bad[0].row == 1


def test_jsonl_bom_accepted_other_encodings_named(data_dir):
    f = _write_jsonl(data_dir / "bom.jsonl", [_row(0), _row(1)], bom=True)
    assert _load(f)[0]["id"].to_pylist() == ["q0", "q1"]  # the first row is not lost to the BOM
    latin1 = '{"id": "q1", "image": "img/a.png", "question": "Caf\xe9?", "answer": "3"}'.encode("latin-1")
    f = _write_jsonl(data_dir / "latin1.jsonl", [_row(0), _row(1), _row(2)], raw_lines={1: latin1})
    from r3v.datasets import BadRowError

    with pytest.raises(BadRowError, match=r"row 1 .*line 2 is not UTF-8 \(byte 0xe9 at column \d+\)"):
        _load(f)
    assert _load(f, skip=True)[0]["id"].to_pylist() == ["q0", "q2"]


def test_pixel_limit_is_configurable(data_dir):
    from r3v.datasets import BadRowError

    f = _write_jsonl(data_dir / "d.jsonl", [_row(0)])
    assert _load(f)[1].kept == 1
    with pytest.raises(BadRowError, match=r"8x8 = 64 pixels, over data.max_image_pixels=63"):
        _load(f, max_pixels=63)


def test_parquet_wrong_types_and_truncated_file_are_named(data_dir):
    import pyarrow.parquet as pq

    from r3v.datasets import BadFileError, BadRowError

    png = (data_dir / "img" / "a.png").read_bytes()
    t = pa.table({"id": ["a", "b"], "image": [png, png], "question": ["q?", "q?"],
                  "answer": pa.array([["1"], ["2", "3"]], pa.list_(pa.string()))})
    f = data_dir / "lists.parquet"
    pq.write_table(t, f)
    with pytest.raises(BadRowError, match=re.escape(f"{f}: row 0 (id='a'): answer (column 'answer') is a list")):
        _load(f, fmt="parquet")
    t = pa.table({"id": ["a", "b"], "image": [png, png], "question": ["q?", "q?"], "answer": ["1", "2"]})
    pq.write_table(t, f)
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(BadFileError, match=re.escape(f"{f}: unreadable Parquet file")):
        _load(f, fmt="parquet", skip=True)  # a whole file is not a row to skip: it is named and stops the run


def _files_config(tmp_path, train: Path, test: Path, *extra):
    from r3v.config import load_config

    return load_config(None, [f"run.root={tmp_path}", "data.source=files", f"data.train_split.path={train}",
                              "data.train_split.format=jsonl", f"data.test_split.path={test}",
                              "data.test_split.format=jsonl", *extra]).data


def test_id_in_two_splits_is_leakage(data_dir, tmp_path):
    from r3v.datasets import BadRowError, load_splits

    train = _write_jsonl(data_dir / "train.jsonl", [_row(0), _row(1), _row(2)])
    test = _write_jsonl(data_dir / "test.jsonl", [_row(1), _row(9)])
    with pytest.raises(BadRowError, match=r"train\.jsonl: row 1 \(id='q1'\): id also in the test split"):
        load_splits(_files_config(tmp_path, train, test))
    splits = load_splits(_files_config(tmp_path, train, test, "data.skip_bad_rows=true"))
    assert splits["train"][0]["id"].to_pylist() == ["q0", "q2"]  # dropped from train: the test split stays whole
    assert splits["test"][0]["id"].to_pylist() == ["q1", "q9"]
    assert splits["train"][1].kept == 2 and len(splits["train"][1].bad) == 1
    same = load_splits(_files_config(tmp_path, test, test, "data.allow_split_overlap=true"))  # one file twice: allowed
    assert same["train"][0].num_rows == same["test"][0].num_rows == 2


def test_data_inspect_reports_every_kind(data_dir):
    from r3v.datasets import inspect_source

    bad = [_row(1, image="img/bomb.png"), _row(2, image="../outside.png"), _row(3, answer=[1]),
           _row(4, answer=True), _row(5, question=3)]
    latin1 = '{"id": "q6", "question": "\xe9"}'.encode("latin-1")
    f = _write_jsonl(data_dir / "d.jsonl", [_row(0), *bad, _row(6)], raw_lines={6: latin1}, bom=True)
    text, report = inspect_source(f)
    assert report.kept == 1 and len(report.bad) == 6
    for says in ("over data.max_image_pixels", "resolves outside the image folder", "is a list", "is a boolean",
                 "question is a int", "line 7 is not UTF-8"):
        assert says in text


# -- a SIGKILLed run leaves no orphaned process ---------------------------------------------------------


def test_watchdog_stops_what_a_killed_process_started(tmp_path):
    """A parent that starts a server-like child (ignoring SIGTERM, like a busy process) and a
    grandchild, then is SIGKILLed: the watchdog stops both."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from r3v.watchdog import _stat

    pids = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, sys, time
from r3v import watchdog
watchdog.start()
a = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
b = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); open({str(pids)!r} + '.c', 'w').write(str(c.pid)); time.sleep(600)"])
time.sleep(1.5)
open({str(pids)!r}, 'w').write(f"{{a.pid}} {{b.pid}}")
time.sleep(600)
"""])
    deadline = time.monotonic() + 30
    while not (pids.exists() and Path(f"{pids}.c").exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [int(x) for x in pids.read_text().split()] + [int(Path(f"{pids}.c").read_text())]
    assert all(_stat(p) is not None for p in children)
    time.sleep(1.0)  # the watchdog has seen them
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_stat(p) is not None for p in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in children if _stat(p) is not None] == []  # SIGTERM, then SIGKILL for the one ignoring it


def test_data_inspect_against_another_split_names_shared_ids(data_dir, capsys):
    from r3v.cli import main

    train = _write_jsonl(data_dir / "train.jsonl", [_row(0), _row(1), _row(2)])
    test = _write_jsonl(data_dir / "test.jsonl", [_row(1), _row(9)])
    assert main(["data", "inspect", str(train), "--against", str(test)]) == 0
    out = capsys.readouterr().out
    assert f"ids also in {test}: 1 (leakage" in out and f"{train}: row 1 (id='q1'): id also in {test}" in out
