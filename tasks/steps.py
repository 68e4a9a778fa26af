"""The loop's steps as Prefect tasks (see tasks/__init__.py)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from r3v import report as r3v_report
from r3v import steps


def _log(step: str, facts: dict) -> dict:
    get_run_logger().info("%s: %s", step, facts)
    return facts


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(run_dir: str) -> dict:
    return _log("prepare", steps.prepare(run_dir))


@task(name="seed", cache_policy=NO_CACHE)
def seed(run_dir: str) -> dict:
    return _log("seed", steps.seed(run_dir))


@task(name="sample", task_run_name="sample-it{iteration}", cache_policy=NO_CACHE)
def sample(run_dir: str, iteration: int) -> dict:
    return _log("sample", steps.sample(run_dir, iteration))


@task(name="judge", task_run_name="judge-it{iteration}", cache_policy=NO_CACHE)
def judge(run_dir: str, iteration: int) -> dict:
    return _log("judge", steps.judge(run_dir, iteration))


@task(name="build_sets", task_run_name="build_sets-it{iteration}", cache_policy=NO_CACHE)
def build_sets(run_dir: str, iteration: int) -> dict:
    return _log("build_sets", steps.build_sets(run_dir, iteration))


@task(name="train", task_run_name="train-it{iteration}", cache_policy=NO_CACHE)
def train(run_dir: str, iteration: int) -> dict:
    return _log("train", steps.train(run_dir, iteration))


@task(name="evaluate", task_run_name="evaluate-it{iteration}", cache_policy=NO_CACHE)
def evaluate(run_dir: str, iteration: int) -> dict:
    return _log("evaluate", steps.evaluate(run_dir, iteration))


@task(name="report", cache_policy=NO_CACHE)
def report(run_dir: str) -> str:
    md = r3v_report.write_report(run_dir)
    get_run_logger().info("report written to %s/results.md", run_dir)
    return md


@task(name="scale", task_run_name="scale-it{iteration}", cache_policy=NO_CACHE)
def scale(run_dir: str, iteration: int, ns: list[int]) -> dict:
    return _log("scale", steps.scale(run_dir, iteration, tuple(ns)))
