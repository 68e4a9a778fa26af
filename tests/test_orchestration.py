"""Orchestration pieces that need no model: the run lock, the shard layout, cache keys, the
deployment and docker-compose files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r3v.config import load_config
from r3v.run import RunLocked, clean_partials, init_run, run_lock, run_meta

ROOT = Path(__file__).resolve().parents[1]


def test_lock_refuses_a_second_writer_and_goes_with_a_killed_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from r3v.run import run_lock\n"
         "with run_lock(sys.argv[1], owner={'flow_run': 'first'}):\n    print('held', flush=True); time.sleep(600)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"pid {holder.pid}.*flow_run first.*one writer"):
            with run_lock(tmp_path):
                pass
        os.kill(holder.pid, signal.SIGKILL)  # a crashed run: its lock must not stay
        holder.wait(10)
        with run_lock(tmp_path, owner={"flow_run": "second"}) as info:
            assert info["pid"] == os.getpid()
            assert json.loads((tmp_path / ".lock").read_text())["flow_run"] == "second"
            with pytest.raises(RunLocked):  # the same process, a second writer: refused too
                with run_lock(tmp_path):
                    pass
        with run_lock(tmp_path):  # released on exit
            pass
    finally:
        holder.kill()


def test_clean_partials_removes_only_hidden_temporaries(tmp_path):
    (tmp_path / "rollouts" / "iteration=1" / ".tmp-shard=2-abcd").mkdir(parents=True)
    (tmp_path / "rollouts" / "iteration=1" / "shard=1").mkdir()
    (tmp_path / "checkpoints" / ".old-iteration=1-ef01").mkdir(parents=True)
    assert clean_partials(tmp_path) == 2
    assert [p.name for p in (tmp_path / "rollouts" / "iteration=1").iterdir()] == ["shard=1"]


def _run_with_questions(tmp_path, n_train: int, *overrides: str) -> str:
    import pyarrow as pa

    from r3v.run import Run
    from r3v.schema import QUESTION_SCHEMA

    cfg = load_config(overrides=[f"run.root={tmp_path}", "run.name=r", *overrides])
    run_dir = init_run(cfg)
    rows = [{"id": f"q{i}", "split": "train"} for i in range(n_train)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([QUESTION_SCHEMA.field("id"), QUESTION_SCHEMA.field("split")]))
    cols = {f.name: table.column(f.name) if f.name in table.schema.names else pa.nulls(n_train, f.type)
            for f in QUESTION_SCHEMA}
    Run.open(run_dir).store.write("questions", pa.table(cols, schema=QUESTION_SCHEMA), split="train")
    return str(run_dir)


def test_shard_layout_is_kept_for_the_iteration_it_started(tmp_path):
    from r3v.steps import plan_shards

    run_dir = _run_with_questions(tmp_path, 10, "orchestration.shard_size=4")
    assert plan_shards(run_dir, 1) == [0, 1, 2]  # 4 + 4 + 2
    assert plan_shards(run_dir, 1, shard_size=3) == [0, 1, 2]  # a retry with another size keeps the layout
    assert plan_shards(run_dir, 2, shard_size=3) == [0, 1, 2, 3]  # a new iteration takes the new size
    assert plan_shards(run_dir, 3, shard_size=0) == [0]
    assert run_meta(run_dir)["rollout_shards"]["1"] == {"shard_size": 4, "shards": 3}


def test_orchestration_is_not_part_of_the_config_hash(tmp_path):
    a = load_config(overrides=[f"run.root={tmp_path}"])
    b = load_config(overrides=[f"run.root={tmp_path}", "orchestration.shard_size=7", "orchestration.task_runner=dask",
                               "orchestration.workers=4"])
    assert a.hash() == b.hash()
    init_run(a)
    assert init_run(b) == a.run_dir.resolve()  # a resume may change where the work runs


def test_cache_keys_name_run_config_iteration_step_and_shard(tmp_path):
    from tasks.steps import cache_key

    run_dir = _run_with_questions(tmp_path, 2)
    meta = run_meta(run_dir)
    key = cache_key("rollout_shard")(None, {"run_dir": run_dir, "iteration": 2, "shard": 5})
    assert re.fullmatch(rf"r3v-{meta['run_id']}-{meta['config_hash']}-it2-rollout_shard-shard5-[0-9a-f]{{12}}", key)
    # a step that is still not finished when asked again (killed, or never ran) gets a new key
    assert cache_key("rollout_shard")(None, {"run_dir": run_dir, "iteration": 2, "shard": 5}) != key
    issued = cache_key("prepare")(None, {"run_dir": run_dir})
    assert "-it0-prepare-shardall-" in issued
    # once finished, the key its result was stored under stays: a retry finds it Cached
    from r3v.ledger import record
    from r3v.run import Run

    record(Run.open(run_dir), 0, "prepare", 0.0, {"questions": 2})
    assert cache_key("prepare")(None, {"run_dir": run_dir}) == issued == cache_key("prepare")(None, {"run_dir": run_dir})
    # its outputs deleted: not finished, so a new key, whatever Prefect stored under the old one
    shutil.rmtree(Path(run_dir) / "questions")
    assert cache_key("prepare")(None, {"run_dir": run_dir}) != issued
    # a recreated folder is a new run: its keys never meet the old run's results
    shutil.rmtree(run_dir)
    run_dir = _run_with_questions(tmp_path, 2)
    record(Run.open(run_dir), 0, "prepare", 0.0, {"questions": 2})
    assert cache_key("prepare")(None, {"run_dir": run_dir}) != issued


def test_a_killed_task_run_is_finished_where_the_store_says_so(tmp_path):
    from r3v.ledger import record
    from r3v.run import Run
    from tasks.steps import finished_in_store

    run_dir = _run_with_questions(tmp_path, 2)
    assert not finished_in_store(run_dir, "prepare")
    record(Run.open(run_dir), 0, "prepare", 0.0, {"questions": 2})
    assert finished_in_store(run_dir, "prepare")
    # the names step_task gives, parsed to the record they stand for
    assert not finished_in_store(run_dir, "warmup") and not finished_in_store(run_dir, "train-it1")
    assert not finished_in_store(run_dir, "rollout-it1-shard0")  # no shard record
    # names of tasks with no record in the store, or not of this module's steps
    for name in ("report", "scale-it1", "prepare-shard0", "train-it1-shard0", "adopt-x", "prepare-it0x"):
        assert not finished_in_store(run_dir, name), name
    shutil.rmtree(Path(run_dir) / "questions")  # its outputs gone: no longer finished
    assert not finished_in_store(run_dir, "prepare")
    assert not finished_in_store(str(tmp_path / "nowhere"), "prepare")


def test_prefect_yaml_deploys_the_flow_to_three_kinds_of_pool():
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"iterate-process", "iterate-docker", "iterate-k8s"}
    for d in deployments.values():
        path, fn = d["entrypoint"].split(":")
        assert (ROOT / path).exists()
        assert set(d["parameters"]) == {"config", "overrides", "run_name", "iterations"}
        assert (ROOT / d["parameters"]["config"]).exists()
    flow = load_flow_from_entrypoint(str(ROOT / deployments["iterate-process"]["entrypoint"]))
    assert flow.name == "r3v"
    assert set(flow.parameters.properties) == {"config", "overrides", "run_name", "iterations"}
    assert deployments["iterate-docker"]["work_pool"]["job_variables"]["image"] == "{{ $R3V_IMAGE }}"


def test_docker_compose_names_only_what_exists():
    """docker-compose.yml cannot run here (no Docker engine): check everything it names."""
    from r3v.cli import main  # noqa: F401 (the worker's command is this CLI)

    text = (ROOT / "docker-compose.yml").read_text()
    spec = yaml.safe_load(text)
    services = spec["services"]
    assert set(services) == {"postgres", "prefect-server", "worker"}
    # no secrets: every credential is a variable with a documented default
    for var in re.findall(r"\$\{(R3V_[A-Z_]+):-[^}]*\}", text):
        assert var in (ROOT / "README.md").read_text(), f"{var} is not documented in the README"
    assert "PASSWORD: prefect" not in text and re.search(r"PASSWORD: \$\{R3V_PG_PASSWORD:-", text)
    worker = services["worker"]
    assert worker["build"]["context"] == "." and (ROOT / "Dockerfile").exists()
    for line in (ROOT / "Dockerfile").read_text().splitlines():  # everything the image copies exists
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"
    assert worker["command"] == "r3v serve"
    assert "serve" in subprocess.run([sys.executable, "-m", "r3v.cli", "--help"], capture_output=True,
                                     text=True, check=True).stdout
    assert services["prefect-server"]["command"].startswith("prefect server start")
    # a CPU host can run it: the GPU reservation is only in the override file
    assert "deploy" not in worker and "nvidia" not in text
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["worker"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # the server image and the worker's Prefect are one version, the one this project installs
    import prefect

    server = services["prefect-server"]
    pinned = re.fullmatch(r"prefecthq/prefect:\$\{R3V_PREFECT_VERSION:-([\d.]+)\}-python3\.11", server["image"])
    assert pinned, server["image"]
    assert worker["build"]["args"]["PREFECT_VERSION"] == "${R3V_PREFECT_VERSION:-%s}" % pinned[1]
    assert f"ARG PREFECT_VERSION={pinned[1]}" in (ROOT / "Dockerfile").read_text()
    assert 'prefect==${PREFECT_VERSION}' in (ROOT / "Dockerfile").read_text()
    assert prefect.__version__ == pinned[1], "the tested Prefect and the compose pin differ"
    # the worker waits for a healthy server, and a dead worker's runs are Crashed by the server
    assert "/api/health" in " ".join(server["healthcheck"]["test"])
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "R3V_CRASH_AFTER"} <= set(worker["environment"])
    named_volumes = set(spec["volumes"])
    for svc in services.values():
        for v in svc.get("volumes", []):
            assert v.split(":")[0] in named_volumes
        for dep in svc.get("depends_on", []):
            assert dep in services
    assert worker["environment"]["PREFECT_API_URL"].startswith("http://prefect-server:4200")


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1, Debian's package), whichever is here."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_cli() is None, reason="no compose CLI here (docker compose / docker-compose): not validated")
@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]])
def test_docker_compose_config_validates(files):
    """The compose CLI's own validation (no engine needed), on the CPU path and with the GPU override."""
    args = [a for f in files for a in ("-f", str(ROOT / f))]
    out = subprocess.run([*_compose_cli(), *args, "config", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_served_deployment_is_r3v_iterate():
    from flows.serve import deployments

    names = [f"{d.flow_name}/{d.name}" for d in deployments()]
    assert "r3v/iterate" in names


def test_dask_runner_needs_its_extra_or_says_so(monkeypatch):
    from flows.rollout import task_runner
    from r3v.config import OrchestrationConfig

    assert task_runner(OrchestrationConfig()) is None
    runner = task_runner(OrchestrationConfig(task_runner="dask", workers=2))
    assert runner.__class__.__name__ == "DaskTaskRunner"
    monkeypatch.setitem(sys.modules, "prefect_dask", None)
    with pytest.raises(ImportError, match=r'pip install "r3v\[dask\]"'):
        task_runner(OrchestrationConfig(task_runner="dask"))


@pytest.mark.slow
def test_serve_sets_up_the_server_s_crash_watch_once(harness, monkeypatch):
    """`r3v serve` creates the automation that crashes a run whose heartbeats stopped (a worker host
    lost), keeps it when it is already there, and brings its window up to date when it changed."""
    from prefect.automations import Automation
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.serve import CRASH_AUTOMATION, crash_after_seconds, ensure_crash_automation

    monkeypatch.delenv("R3V_CRASH_AFTER", raising=False)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 40}):
        assert crash_after_seconds() == 120  # three heartbeats by default
    monkeypatch.setenv("R3V_CRASH_AFTER", "45")
    assert crash_after_seconds() == 45
    try:
        Automation.read(name=CRASH_AUTOMATION).delete()
    except ValueError:
        pass
    assert ensure_crash_automation(45) == "created"
    assert ensure_crash_automation(45) == "kept"
    assert ensure_crash_automation(90) == "updated"
    auto = Automation.read(name=CRASH_AUTOMATION)
    assert auto.trigger.posture == "Proactive" and auto.trigger.within.total_seconds() == 90
    assert auto.trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.Completed" in auto.trigger.expect
    assert auto.actions[0].type == "change-flow-run-state" and auto.actions[0].state == "CRASHED"
    assert "Retry resumes it" in auto.actions[0].message
