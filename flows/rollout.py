"""One iteration's rollout as mapped shard tasks.

    shards <- blocks of orchestration.shard_size train questions (the layout is kept in run.json)
    for each shard not finished yet:  sample N rationales per question with M_{k-1}
    rollout(k): check every shard is there, record the step

`sequential` runs the shards one after another in the flow's process (one model load for all);
`dask` maps them over a Dask cluster (a local one of `workers` processes, or the existing one at
`address`) in a subflow `rollout-it<k>-shards`. Either way a retried run skips the finished shards.
"""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.futures import as_completed

import tasks
from r3v.config import OrchestrationConfig
from r3v.steps import plan_shards
from tasks.steps import ProgressCard


def task_runner(orch: OrchestrationConfig):
    """The Prefect task runner for `orchestration.task_runner` (None: the flow's own process)."""
    if orch.task_runner == "sequential":
        return None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:
        raise ImportError('orchestration.task_runner=dask needs prefect-dask: pip install "r3v[dask]"') from e
    if orch.address:
        return DaskTaskRunner(address=orch.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": orch.workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def rollout(run_dir: str, iteration: int, orch: OrchestrationConfig) -> dict:
    """Sample iteration k's rollouts shard by shard, then record the step."""
    shards = plan_shards(run_dir, iteration, orch.shard_size)
    runner = task_runner(orch)
    if runner is None:
        progress = ProgressCard(run_dir, f"rollout-it{iteration}", f"Rollout of iteration {iteration} (shards)")
        progress(0, len(shards))  # the card shows from the rollout's start
        for j in shards:
            tasks.rollout_shard(run_dir, iteration, j)
            progress(j + 1, len(shards))
    else:
        rollout_flow.with_options(task_runner=runner)(run_dir, iteration, shards)
    return tasks.rollout(run_dir, iteration)


@flow(name="r3v-rollout", flow_run_name="rollout-it{iteration}-shards")
def rollout_flow(run_dir: str, iteration: int, shards: list[int]) -> list[dict]:
    """The shards of one rollout in parallel on the flow's task runner."""
    progress = ProgressCard(run_dir, f"rollout-it{iteration}", f"Rollout of iteration {iteration} (shards)")
    progress(0, len(shards))
    futures = tasks.rollout_shard.map(unmapped(run_dir), unmapped(iteration), shards)
    results = []
    for i, fut in enumerate(as_completed(futures)):
        results.append(fut.result())
        progress(i + 1, len(shards))
    return results
