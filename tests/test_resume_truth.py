"""The run store decides what is done (issue 20): delete or damage an output of a finished run and
the resume redoes exactly that step and what depends on it, whatever Prefect's cache holds, and
exits with complete data.

Each case works on a copy of the session's finished one-iteration run (conftest `flow_run`), so
Prefect's persisted results for its steps exist and would say Cached; the store overrules them.
"""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
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


def _resume(flow_run, model_overrides, tmp_path, damage) -> tuple[set[str], dict, dict]:
    """Copy the finished run, damage it, resume it with the same config: (redone records, counts
    before, counts after)."""
    from conftest import FLOW_OVERRIDES

    from flows.iterate import r3v_flow

    run_dir = tmp_path / "runs" / "it"
    shutil.copytree(flow_run, run_dir, symlinks=True)
    before, counts = _records(run_dir), _counts(run_dir)
    damage(run_dir)
    r3v_flow(overrides=FLOW_OVERRIDES + model_overrides + [f"run.root={tmp_path / 'runs'}"], run_name="it")
    after = _records(run_dir)
    assert set(after) == set(before)
    return {k for k in after if after[k] != before[k]}, counts, _counts(run_dir)


def test_deleted_checkpoint_and_eval_file_are_redone(flow_run, model_overrides, tmp_path, harness):
    def damage(run_dir):
        shutil.rmtree(run_dir / "checkpoints" / "iteration=1")
        (run_dir / "eval" / "iteration=0" / "part-0.parquet").unlink()

    redone, counts, after = _resume(flow_run, model_overrides, tmp_path, damage)
    assert redone == {"0/evaluate", "1/train", "1/evaluate"}
    assert after == counts and (tmp_path / "runs" / "it" / "checkpoints" / "iteration=1" / "manifest.json").exists()


def test_deleted_shard_redoes_the_iteration_from_its_rollout(flow_run, model_overrides, tmp_path, harness):
    def damage(run_dir):
        shutil.rmtree(run_dir / "rollouts" / "iteration=1" / "shard=0")

    redone, counts, after = _resume(flow_run, model_overrides, tmp_path, damage)
    # the shard is resampled (same seeds: the same texts, new timings), so the pool is judged and
    # the sets rebuilt; the sets come out the same, so the adapter trained on them is kept
    assert redone == {"1/shard0", "1/rollout", "1/judge", "1/build_sets"}
    assert after == counts


def test_truncated_set_file_and_missing_record_are_redone(flow_run, model_overrides, tmp_path, harness):
    """A truncated Parquet file of a set, and the issue's case: a step record deleted with its
    outputs left (`judge`'s here) — both steps and what follows them are redone."""
    def damage(run_dir):
        f = run_dir / "sets" / "iteration=1" / "kind=sft" / "part-0.parquet"
        f.write_bytes(f.read_bytes()[:100])
        shutil.rmtree(run_dir / "steps" / "iteration=1" / "step=judge")

    redone, counts, after = _resume(flow_run, model_overrides, tmp_path, damage)
    assert redone == {"1/judge", "1/build_sets"}  # the rebuilt sets are the same: train and evaluate stand
    assert after == counts
    run_dir = tmp_path / "runs" / "it"
    depends = _check(run_dir, 1, "build_sets")["depends"]
    assert depends == {"1/judge": _check(run_dir, 1, "judge")["outputs"]}


def test_redone_step_with_other_outputs_redoes_its_dependents(flow_run, model_overrides, tmp_path, harness):
    """A set partition replaced by other rows (fewer refine pairs): build_sets is redone and
    rebuilds it, and what read the sets (train, then evaluate) is redone too."""
    import pyarrow.parquet as pq

    def damage(run_dir):
        f = run_dir / "sets" / "iteration=1" / "kind=sft" / "part-0.parquet"
        pq.write_table(pq.read_table(f).slice(0, 1), f)

    redone, counts, after = _resume(flow_run, model_overrides, tmp_path, damage)
    assert redone == {"1/build_sets"}  # rebuilt to the recorded outputs: nothing after it changes
    assert after == counts

    run_dir = tmp_path / "runs" / "it"
    facts = json.loads(Store(run_dir).read("steps", iteration=1, step="train")["info"][0].as_py())
    facts["check"]["depends"]["1/build_sets"] = "0" * 16  # as if train had read other sets
    from r3v.ledger import verify
    from r3v.run import Run

    Store(run_dir).write("steps", Store(run_dir).read("steps", iteration=1, step="train")
                         .drop_columns(["iteration", "step"]).set_column(2, "info", pa.array([json.dumps(facts)])),
                         iteration=1, step="train")
    assert verify(Run.open(run_dir), 1, "train")[0] is None


def _check(run_dir, iteration, step):
    return json.loads(Store(run_dir).read("steps", iteration=iteration, step=step)["info"][0].as_py())["check"]


def _as_previous_version(run_dir) -> None:
    """Turn a run folder into what the version before the renames wrote: the warm-up and the rollout
    recorded as `seed` and `sample` (partitions, their `step` column, the names in every record's
    inputs), M_0 in checkpoints/seed, and a config.yaml with the `seed:` section and the old keys."""
    import yaml

    from r3v.step_table import STEPS

    store = Store(run_dir)
    for name, spec in STEPS.items():
        for part in sorted((run_dir / "steps").glob(f"iteration=*/step={name}")):
            it = int(part.parent.name.split("=")[1])
            rec = store.read("steps", iteration=it, step=name)
            shutil.rmtree(part)
            store.write("steps", rec.drop_columns(["iteration", "step"]), iteration=it, step=spec.formerly or name)
    renamed = {f"{it}/{new}": f"{it}/{spec.formerly}" for new, spec in STEPS.items() if spec.formerly for it in (0, 1)}
    for part in sorted((run_dir / "steps").glob("iteration=*/step=*")):
        it, name = int(part.parent.name.split("=")[1]), part.name.split("=")[1]
        rec = store.read("steps", iteration=it, step=name)
        info = json.loads(rec["info"][0].as_py())
        info["check"]["depends"] = {renamed.get(k, k): v for k, v in info["check"]["depends"].items()}
        store.write("steps", rec.drop_columns(["iteration", "step"]).set_column(
            2, "info", pa.array([json.dumps(info)])), iteration=it, step=name)
    if (run_dir / "checkpoints" / "warmup").is_dir():
        (run_dir / "checkpoints" / "warmup").rename(run_dir / "checkpoints" / "seed")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["seed"] = cfg.pop("warmup")
    cfg["sq"]["seed_stage"] = cfg["sq"].pop("warmup")
    cfg["eval"]["evaluate_seed"] = cfg["eval"].pop("evaluate_m0")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_run_folder_of_the_previous_version_resumes_with_nothing_redone(flow_run, model_overrides, tmp_path, harness,
                                                                         caplog):
    """Issue 34: steps and config keys renamed (`seed` -> `warmup`, `sample` -> `rollout`), a run made
    before resumes as it is: every step is found finished under its former name, nothing is redone, and
    the views show the names now."""
    from conftest import FLOW_OVERRIDES

    from flows.iterate import r3v_flow

    run_dir = tmp_path / "runs" / "it"
    shutil.copytree(flow_run, run_dir, symlinks=True)
    counts = _counts(run_dir)
    _as_previous_version(run_dir)
    before = _records(run_dir)
    r3v_flow(overrides=FLOW_OVERRIDES + model_overrides + [f"run.root={tmp_path / 'runs'}"], run_name="it")
    assert _records(run_dir) == before and _counts(run_dir) == counts  # nothing redone, nothing lost
    assert (run_dir / "steps" / "iteration=0" / "step=seed").is_dir()  # left as it was
    assert (run_dir / "steps" / "iteration=1" / "step=sample").is_dir()
    seconds = dict(Store(run_dir).query("SELECT seconds_by_step FROM metrics WHERE iteration = 1")
                   ["seconds_by_step"][0].as_py())
    assert "rollout" in seconds and "sample" not in seconds
    from r3v.ledger import done
    from r3v.run import Run

    assert done(Run.open(run_dir), 1, "rollout")["samples"] > 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("recorded under its former name 'sample'" in m for m in warned), warned
    assert any("config key 'seed' is now called 'warmup'" in m for m in warned), warned
