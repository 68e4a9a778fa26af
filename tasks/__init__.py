"""Prefect tasks: one thin task per step of the loop, each calling one r3v.steps function (and
the experiment runner's adopt and report, calling r3v.experiment).

Tasks pass the run folder (a string) and the iteration, never models or big objects. Resuming is
the steps' own: each records its completion in the store, so a retried flow run skips finished
steps without relying on Prefect's result cache.
"""

from tasks.experiment import adopt, experiment_report
from tasks.steps import build_sets, evaluate, judge, prepare, report, sample, scale, seed, train

__all__ = ["prepare", "seed", "sample", "judge", "build_sets", "train", "evaluate", "report", "scale", "adopt",
           "experiment_report"]
