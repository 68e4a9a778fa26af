"""Integration: the real flow on the tiny model under prefect_test_harness, then `r3v sql` on it."""

import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import FLOW_OVERRIDES as OVERRIDES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(flow_run):
    return flow_run


def test_flow_writes_every_table(run_dir):
    from r3v.store import Store

    store = Store(run_dir)
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    assert q("SELECT split, count(*) AS n FROM questions GROUP BY split ORDER BY split") == [
        {"split": "seed", "n": 200}, {"split": "test", "n": 12}, {"split": "train", "n": 24}]
    # 24 questions x 3 samples, once: the resumed run added no rows
    assert q("SELECT iteration, count(*) AS n, count(DISTINCT sample_id) AS d FROM samples GROUP BY 1") == [
        {"iteration": 1, "n": 72, "d": 72}]
    counts = q("SELECT count(*) FILTER (WHERE correct) AS pos, count(*) FILTER (WHERE NOT correct) AS neg "
               "FROM samples")[0]
    assert counts["pos"] > 0, "the seed model answered no train question right"
    sizes = {r["kind"]: r["n"] for r in q("SELECT kind, count(*) AS n FROM sets GROUP BY kind")}
    assert sizes["sft"] == q("SELECT count(*) AS n FROM sft_examples")[0]["n"] > 0
    assert sizes.get("refine", 0) == q("SELECT count(*) AS n FROM refine_pairs")[0]["n"]
    metrics = q("SELECT * FROM metrics ORDER BY iteration")
    assert [m["iteration"] for m in metrics] == [0, 1]
    for m in metrics:
        for k in ("pass_at_1", "maj_at_n", "oracle_at_n", "select_at_n"):
            assert 0.0 <= m[k] <= 1.0
        assert m["oracle_at_n"] >= m["maj_at_n"] - 1e-9
    losses = q("SELECT avg(loss_sft) AS sft FROM src_train_log WHERE iteration = 1")[0]
    assert losses["sft"] > 0
    adapter = run_dir / "checkpoints" / "iteration=1"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "manifest.json").exists()
    assert (run_dir / "results.md").exists() and (run_dir / "accuracy.png").stat().st_size > 1000
    assert (run_dir / "losses.png").stat().st_size > 1000
    # accuracy per task family: 12 test questions, 4 of each family, the greedy mean is pass@1
    fam = q("SELECT family, questions, accuracy FROM family_accuracy WHERE iteration = 1 AND strategy = 'greedy'")
    assert sorted((f["family"], f["questions"]) for f in fam) == [("chart", 4), ("clevr_math", 4), ("table", 4)]
    assert abs(sum(f["accuracy"] for f in fam) / 3 - metrics[1]["pass_at_1"]) < 1e-9
    assert "pass@1 by task family" in (run_dir / "results.md").read_text()
    curves = q("SELECT iteration, count(*) AS n, count(loss_refine) AS r FROM loss_curves GROUP BY 1 ORDER BY 1")
    assert [c["iteration"] for c in curves] == [0, 1] and curves[0]["n"] == 100 and curves[0]["r"] == 0
    ends = q("SELECT loss_sft_end, loss_refine_end, loss_select_end FROM metrics ORDER BY iteration")
    assert ends[0]["loss_sft_end"] > 0 and ends[0]["loss_refine_end"] is None
    # iteration 1 trained every term; each `_end` is its mean over the last tenth of the steps (at
    # least one), so a term no batch of that tail held has none
    log = q("SELECT step, loss_sft, loss_refine, loss_select FROM src_train_log WHERE iteration = 1 ORDER BY step DESC")
    tail = log[:max(1, len(log) // 10)]
    for term in ("sft", "refine", "select"):
        assert any(r[f"loss_{term}"] is not None and r[f"loss_{term}"] > 0 for r in log), term
        seen = [r[f"loss_{term}"] for r in tail if r[f"loss_{term}"] is not None]
        end = ends[1][f"loss_{term}_end"]
        assert (end is None and not seen) or end == pytest.approx(sum(seen) / len(seen)), (term, end, seen)


def test_r3v_sql_cli(run_dir):
    out = subprocess.run([sys.executable, "-m", "r3v.cli", "sql", str(run_dir),
                          "SELECT iteration, count(*) AS n FROM samples GROUP BY 1", "--format", "csv"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ['"iteration","n"', "1,72"]
    nested = subprocess.run([sys.executable, "-m", "r3v.cli", "sql", str(run_dir), "SELECT * FROM metrics",
                             "--format", "csv"], capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(nested.stdout)))  # map/list columns come out as JSON text
    assert [r["iteration"] for r in rows] == ["0", "1"]
    assert json.loads(rows[1]["seconds_by_step"])["rollout"] > 0
    bad = subprocess.run([sys.executable, "-m", "r3v.cli", "sql", str(run_dir), "DROP VIEW samples"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "only queries" in bad.stderr


def test_changed_config_is_refused(run_dir):
    from r3v.config import load_config
    from r3v.run import RunConfigMismatch, init_run

    cfg = load_config(overrides=OVERRIDES + [f"run.root={run_dir.parent}", "run.name=it", "train.lr=0.5"])
    with pytest.raises(RunConfigMismatch, match=r"train.lr: 0.001 -> 0.5"):
        init_run(cfg)


def test_r3v_errors_cli(run_dir):
    """`r3v errors` sorts every sampled rationale of the pool into one kind, per family."""
    out = subprocess.run([sys.executable, "-m", "r3v.cli", "errors", str(run_dir), "--iteration", "1",
                          "--source", "samples"], capture_output=True, text=True, check=True).stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "family" not in line}
    assert sorted(rows) == ["all", "chart", "clevr_math", "table"]
    assert rows["all"][0] == "72" and abs(sum(float(v) for v in rows["all"][1:]) - 1) < 0.01
    assert float(rows["all"][-1]) == 0  # the embedded questions all keep their truth: no `unknown`


def test_two_iterations_continue_from_previous_adapter(run_dir, tmp_path, model_overrides, harness):
    """Iteration 2 continues iteration 1's adapter (train.init=continue) and its sets come from the
    pool of both iterations. Starts from the first run's M_0 as a local model, without a seed stage."""
    from flows.iterate import r3v_flow
    from r3v.store import Store

    overrides = OVERRIDES + model_overrides + [f"run.root={tmp_path}", "run.iterations=2",
                             "train.init=continue", "warmup.enabled=false", "eval.evaluate_m0=false",
                             f"model.source={run_dir / 'checkpoints' / 'warmup'}"]
    r3v_flow(overrides=overrides, run_name="cont")
    store = Store(tmp_path / "cont")
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    assert q("SELECT iteration, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1") == [
        {"iteration": 1, "n": 72}, {"iteration": 2, "n": 72}]
    # the samples of iteration 2 came from M_1 = M_0 + adapter 1
    refs = q("SELECT DISTINCT iteration, model_ref FROM samples ORDER BY 1")
    assert refs[0]["model_ref"].endswith("@none") and not refs[1]["model_ref"].endswith("@none")
    # the pool accumulates: every question with a positive at iteration 1 keeps an SFT example at 2
    sft = {k: {r["question_id"] for r in q(f"SELECT question_id FROM sets WHERE kind='sft' AND iteration={k}")}
           for k in (1, 2)}
    assert sft[1] <= sft[2]
    import json

    manifest = json.loads((tmp_path / "cont" / "checkpoints" / "iteration=2" / "manifest.json").read_text())
    assert manifest["init"] == "continue"
    metrics = q("SELECT iteration, pass_at_1 FROM metrics ORDER BY 1")
    assert [m["iteration"] for m in metrics] == [0, 1, 2]  # 0: prepare/seed step times only
    assert metrics[0]["pass_at_1"] is None and metrics[2]["pass_at_1"] is not None


def test_the_crash_hook_ends_the_killed_attempts_task_runs_as_the_store_says(run_dir, model_overrides, harness):
    """A SIGKILL can land between a step's write to the store and its Completed state reaching the
    API. The flow's on_crashed hook ends the task runs left Running: Completed where the store holds
    the step as finished (what a retry shows Cached), Crashed elsewhere."""
    from prefect import get_client
    from prefect.states import Crashed, Running

    from flows.iterate import _explain_crash, r3v_flow
    from tasks import train

    params = {"overrides": OVERRIDES + model_overrides + [f"run.root={run_dir.parent}"], "run_name": "it"}
    with get_client(sync_client=True) as client:
        fr = client.create_flow_run(r3v_flow, parameters=params)
        made = {name: client.create_task_run(train, fr.id, dynamic_key=name, name=name, state=Running()).id
                for name in ("train-it1", "rollout-it1-shard0", "train-it2", "rollout-it2-shard0", "report")}
        _explain_crash(r3v_flow, client.read_flow_run(fr.id),
                       Crashed(message="Flow run infrastructure exited with non-zero status code -9."))
        states = {name: client.read_task_run(i).state for name, i in made.items()}
        flow_state = client.read_flow_run(fr.id).state
    assert {n: s.name for n, s in states.items()} == {
        "train-it1": "Completed", "rollout-it1-shard0": "Completed",  # finished in the store
        "train-it2": "Crashed", "rollout-it2-shard0": "Crashed", "report": "Crashed"}
    assert "in the run's store" in states["train-it1"].message and "Retry resumes it" in states["report"].message
    assert flow_state.name == "Crashed" and flow_state.message.startswith("The flow's process was killed by SIGKILL")
