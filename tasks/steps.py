"""The loop's steps as Prefect tasks (see tasks/__init__.py).

Cache keys: (run id, config hash, iteration, step, shard, attempt token; see cache_key). A
retried flow run finds the results of finished tasks under their keys (they show as Cached); a
step the store does not hold as finished (outputs missing or changed) gets a new token and runs.
The run id is new for every run folder created, so a deleted and recreated run never meets an old
result.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from r3v import steps
from r3v.analysis import report as r3v_report
from r3v.ledger import shard_done, verify
from r3v.run import Run, run_meta
from r3v.step_table import SHARD_RUN_NAME, STEPS
from r3v.store import atomic_write_text


def _attempt_token(run_dir: str, name: str, finished: bool) -> str:
    """The token that ends the task's cache key: while the step stays finished, the token its
    result was stored under; whenever it must run (never run, killed, or its outputs deleted
    since), a new random one, which no stored result has, not even one of a copy of this run
    folder (same run id). Kept per task in `<run>/cache_keys/` (one small file each, so parallel
    shard tasks never write the same one)."""
    f = Path(run_dir) / "cache_keys" / name
    if finished:
        return f.read_text().strip() if f.is_file() else "0"
    token = uuid.uuid4().hex[:12]
    atomic_write_text(f, token)
    return token


def cache_key(step: str):
    """`r3v-<run id>-<config hash>-it<k>-<step>-shard<j|all>-<token>`. A step the store holds as
    finished (r3v/ledger.py `verify`: record, outputs and inputs intact) keeps the token its result was
    stored under, so a retry finds it Cached; a step that is not finished gets a new token, a key
    no stored result has, so Prefect runs it whatever its cache holds."""
    def key(_context, p: dict) -> str:
        run_dir, iteration = p["run_dir"], p.get("iteration", 0)
        meta = run_meta(run_dir)
        run = Run.open(run_dir)
        if step == "rollout_shard":
            finished = shard_done(run, iteration, p["shard"]) is not None
        else:
            finished = verify(run, iteration, step)[0] is not None
        name = f"it{iteration}-{step}-shard{p.get('shard', 'all')}"
        return f"r3v-{meta['run_id']}-{meta['config_hash']}-{name}-{_attempt_token(run_dir, name, finished)}"
    return key


def _pattern(template: str) -> re.Pattern:
    """`train-it{iteration}` -> a pattern that reads the iteration back from a task run's name."""
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>\\d+)", re.escape(template)))


_RUN_NAMES: dict[str, re.Pattern] = {
    **{name: _pattern(spec.run_name) for name, spec in STEPS.items()}, "rollout_shard": _pattern(SHARD_RUN_NAME)}
"""step -> the pattern of its task runs' names (r3v/step_table.py)."""


def step_task(step: str):
    """A task for one step, named as r3v/step_table.py says (`train-it1`, `rollout-it1-shard3`) and
    cached under cache_key(step)."""
    run_name = SHARD_RUN_NAME if step == "rollout_shard" else STEPS[step].run_name
    return task(name=step, task_run_name=run_name, cache_key_fn=cache_key(step), persist_result=True)


def finished_in_store(run_dir: str, task_run_name: str) -> bool:
    """Whether the store holds the work of the step task run named `task_run_name` (the names
    step_task gives: `warmup`, `train-it1`, `rollout-it1-shard3`) as finished and intact. What a killed
    process's task runs are marked with: one can have written its result and been killed before it
    reported Completed. Any other name (report, scale, a name this module does not give): False."""
    found = next(((step, m) for step, pattern in _RUN_NAMES.items() if (m := pattern.fullmatch(task_run_name))), None)
    if found is None:
        return False
    step, m = found
    keys = {k: int(v) for k, v in m.groupdict().items()}
    try:
        run = Run.open(run_dir)
        if step == "rollout_shard":
            return shard_done(run, keys["iteration"], keys["shard"]) is not None
        return verify(run, keys.get("iteration", 0), step)[0] is not None
    except (OSError, ValueError):  # a run folder that cannot be opened: nothing there is finished
        return False


def _log(step: str, facts: dict) -> dict:
    get_run_logger().info("%s: %s", step, facts)
    return facts


def artifact_key(run_dir: str, what: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for this run."""
    name = re.sub(r"[^a-z0-9]+", "-", run_dir.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")
    return f"r3v-{name}-{what}"


class ProgressCard:
    """The progress card of one step in the Prefect UI: a progress artifact keyed
    `r3v-<run>-<what>` (its title; e.g. `r3v-demo-train-it1`), made at the first update and
    updated at most every `every` seconds and at the end. Its id and last value are kept in
    `<run>/progress/<what>.json`, so when an attempt was killed mid-step, the next attempt's card
    first closes the old one: "interrupted at 40%; resumed by a later attempt"."""

    def __init__(self, run_dir: str, what: str, description: str, every: float = 2.0):
        self.key, self.description, self.every, self.last, self.id = artifact_key(run_dir, what), description, every, 0.0, None
        self.file = Path(run_dir) / "progress" / f"{what}.json"

    def _close_interrupted(self) -> None:
        try:
            old = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return
        if old.get("progress", 100.0) < 100.0:
            try:
                update_progress_artifact(uuid.UUID(old["id"]), progress=old["progress"], description=(
                    f"{self.description}: interrupted at {old['progress']:.0f}% (the attempt was killed); "
                    "a later attempt resumed it, see the newer card"))
            except Exception as e:  # noqa: BLE001 - e.g. made on another API (`r3v run`'s temporary one): gone
                get_run_logger().debug("the interrupted attempt's progress card %s is not on this API: %s", old["id"], e)

    def _save(self, progress: float) -> None:
        atomic_write_text(self.file, json.dumps({"id": str(self.id), "progress": progress}))

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.id is None:
            self._close_interrupted()
            self.id = create_progress_artifact(progress=0.0, key=self.key, description=self.description)
        if done >= total or now - self.last >= self.every:  # always at the first call: the card is on file at once
            value = 100.0 * done / max(1, total)
            update_progress_artifact(self.id, progress=value)
            self._save(value)
            self.last = now


@step_task("prepare")
def prepare(run_dir: str) -> dict:
    return _log("prepare", steps.prepare(run_dir))


@step_task("warmup")
def warmup(run_dir: str) -> dict:
    return _log("warmup", steps.warmup(run_dir, progress=ProgressCard(run_dir, "warmup", "Warm-up M_0 (optimizer steps)")))


@step_task("rollout_shard")
def rollout_shard(run_dir: str, iteration: int, shard: int) -> dict:
    return _log("rollout_shard", steps.rollout_shard(run_dir, iteration, shard))


@step_task("rollout")
def rollout(run_dir: str, iteration: int) -> dict:
    return _log("rollout", steps.rollout(run_dir, iteration))


@step_task("judge")
def judge(run_dir: str, iteration: int) -> dict:
    return _log("judge", steps.judge(run_dir, iteration))


@step_task("build_sets")
def build_sets(run_dir: str, iteration: int) -> dict:
    return _log("build_sets", steps.build_sets(run_dir, iteration))


@step_task("train")
def train(run_dir: str, iteration: int) -> dict:
    progress = ProgressCard(run_dir, f"train-it{iteration}", f"Training M_{iteration} (optimizer steps)")
    return _log("train", steps.train(run_dir, iteration, progress=progress))


@step_task("evaluate")
def evaluate(run_dir: str, iteration: int) -> dict:
    facts = _log("evaluate", steps.evaluate(run_dir, iteration))
    table, md = r3v_report.iteration_summary(run_dir, iteration)
    create_table_artifact(table, key=artifact_key(run_dir, "metrics"),
                          description=f"Metrics by iteration, up to iteration {iteration}")
    create_markdown_artifact(md, key=artifact_key(run_dir, "report"),
                             description=f"Accuracy plot and set sizes after iteration {iteration}")
    return facts


@task(name="report", task_run_name="report", cache_policy=NO_CACHE)  # cheap, and rewritten whenever the run is resumed
def report(run_dir: str) -> str:
    md = r3v_report.write_report(run_dir)
    get_run_logger().info("report written to %s/results.md", run_dir)
    return md


@task(name="scale", task_run_name=STEPS["scale"].run_name, cache_policy=NO_CACHE)  # redone for other N
def scale(run_dir: str, iteration: int, ns: list[int]) -> dict:
    return _log("scale", steps.scale(run_dir, iteration, tuple(ns)))
