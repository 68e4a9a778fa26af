"""The run store decides what is done (issue 20): delete or damage an output of a finished run and
the resume redoes exactly that step and what depends on it, whatever Prefect's cache holds, and
exits with complete data.

Each case works on a copy of the session's finished one-iteration run (conftest `flow_run`), so
Prefect's persisted results for its steps exist and would say Cached; the store overrules them.
"""

from __future__ import annotations

import json
import shutil

import pytest

from r3v.store import Store

pytestmark = pytest.mark.slow


def _records(run_dir) -> dict[str, str]:
    """{"<iteration>/<step>": finished_at} of every step record, and each shard's record time."""
    store = Store(run_dir)
    out = {f"{r['iteration']}/{r['step']}": str(r["finished_at"]) for r in store.read("steps").to_pylist()}
    out |= {f"{r['iteration']}/shard{r['shard']}": str(r["finished_at"]) for r in store.read("shards").to_pylist()}
    return out


def _counts(run_dir) -> dict[str, int]:
    store = Store(run_dir)
    return {v: store.query(f"SELECT count(*) AS n FROM {v}")["n"][0].as_py()
            for v in ("questions", "samples", "sets", "metrics", "loss_curves", "src_eval", "src_eval_metrics")}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _resume(flow_run, tmp_path, damage) -> tuple[set[str], dict, dict]:
    """Copy the finished run, damage it, resume it with the same config: (redone records, counts
    before, counts after)."""
    from conftest import FLOW_OVERRIDES

    from flows.iterate import r3v_flow
    from r3v.run import Run

    run_dir = tmp_path / "runs" / "it"
    shutil.copytree(flow_run, run_dir, symlinks=True)
    cfg = Run.open(run_dir).cfg
    before, counts = _records(run_dir), _counts(run_dir)
    damage(run_dir)
    r3v_flow(overrides=FLOW_OVERRIDES + [f"run.root={tmp_path / 'runs'}", f"model.cache_dir={cfg.model.cache_dir}"],
             run_name="it")
    after = _records(run_dir)
    assert set(after) == set(before)
    return {k for k in after if after[k] != before[k]}, counts, _counts(run_dir)


def test_deleted_checkpoint_and_eval_file_are_redone(flow_run, tmp_path, harness):
    def damage(run_dir):
        shutil.rmtree(run_dir / "checkpoints" / "iteration=1")
        (run_dir / "eval" / "iteration=0" / "part-0.parquet").unlink()

    redone, counts, after = _resume(flow_run, tmp_path, damage)
    assert redone == {"0/evaluate", "1/train", "1/evaluate"}
    assert after == counts and (tmp_path / "runs" / "it" / "checkpoints" / "iteration=1" / "manifest.json").exists()


def test_deleted_shard_redoes_the_iteration_from_its_rollout(flow_run, tmp_path, harness):
    def damage(run_dir):
        shutil.rmtree(run_dir / "rollouts" / "iteration=1" / "shard=0")

    redone, counts, after = _resume(flow_run, tmp_path, damage)
    assert redone == {"1/shard0", "1/sample", "1/judge", "1/build_sets", "1/train", "1/evaluate"}
    assert after == counts


def test_truncated_set_file_and_missing_record_are_redone(flow_run, tmp_path, harness):
    """A truncated Parquet file of a set, and the issue's case: a step record deleted with its
    outputs left (`judge`'s here) — both steps and what follows them are redone."""
    def damage(run_dir):
        f = run_dir / "sets" / "iteration=1" / "kind=sft" / "part-0.parquet"
        f.write_bytes(f.read_bytes()[:100])
        shutil.rmtree(run_dir / "steps" / "iteration=1" / "step=judge")

    redone, counts, after = _resume(flow_run, tmp_path, damage)
    assert redone == {"1/judge", "1/build_sets", "1/train", "1/evaluate"}
    assert after == counts
    assert json.loads(Store(tmp_path / "runs" / "it").read("steps", iteration=1, step="build_sets")["info"][0]
                      .as_py())["check"]["depends"] == {"1/judge": _digest_of(tmp_path / "runs" / "it", 1, "judge")}


def _digest_of(run_dir, iteration, step):
    from r3v.run import digest

    return digest(Store(run_dir).read("steps", iteration=iteration, step=step)["info"][0].as_py())
