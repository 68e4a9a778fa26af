"""Prefect tasks of the experiment runner (see r3v/analysis/experiment.py)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from r3v.analysis import experiment
from r3v.analysis.replicates import write_summary
from r3v.config import load_config


@task(name="adopt", task_run_name="adopt-{arm_dir}", cache_policy=NO_CACHE)
def adopt(arm_dir: str, seed_dir: str, donor_dir: str | None) -> dict:
    facts = experiment.adopt(arm_dir, seed_dir, donor_dir)
    get_run_logger().info("adopt: %s", facts)
    return facts


@task(name="experiment-report", task_run_name="experiment-report", cache_policy=NO_CACHE)
def experiment_report(exp_dir: str, arms: list[str]) -> str:
    md = experiment.write_report(exp_dir, arms)
    get_run_logger().info("experiment report written to %s/results.md", exp_dir)
    return md


@task(name="experiment-summary", task_run_name="experiment-summary", cache_policy=NO_CACHE)
def experiment_summary(exp_dir: str, seeds: list[int], arms: list[str], config: str | None,
                       overrides: list[str]) -> str:
    md = write_summary(exp_dir, seeds, arms, load_config(config, overrides))
    get_run_logger().info("summary over seeds %s written to %s/summary.md", seeds, exp_dir)
    return md
