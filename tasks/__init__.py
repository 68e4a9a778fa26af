"""Prefect tasks: one thin task per step of the loop, each calling one r3v.steps function (and
the experiment runner's adopt and report, calling r3v.analysis.experiment).

Tasks pass the run folder (a string), the iteration and the shard, never models or big objects.
Resuming has two layers: each step records its completion in the store (the truth: a step whose
record is there with its outputs intact returns it at once, with or without Prefect), and each
task's result is persisted under a cache key of (run id, config hash, iteration, step, shard,
attempt token), so a retried flow run shows finished tasks as Cached without running them, and
a step whose outputs went missing gets a new token and runs again whatever the cache holds.
"""

from tasks.experiment import adopt, experiment_report, experiment_summary
from tasks.steps import (
    build_sets,
    evaluate,
    judge,
    prepare,
    report,
    rollout,
    rollout_shard,
    scale,
    train,
    warmup,
)

__all__ = ["prepare", "warmup", "rollout_shard", "rollout", "judge", "build_sets", "train", "evaluate", "report", "scale", "adopt",
           "experiment_report", "experiment_summary"]
