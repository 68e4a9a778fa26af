"""The loop's steps, declared once, as r3v/objective.py declares the loss terms.

Each step: its name, the Prefect task-run name it shows under, what it writes (the outputs the
ledger checks before calling it finished), what it reads (the steps whose outputs it uses: the
loop's DAG) and, for the two training stages, the folder of their mid-training state. Everything
else derives from this table: the ledger's outputs and upstream (r3v/ledger.py `verify`, `record`), the
tasks, their cache keys and the crash hook's "finished in the store" test (tasks/steps.py), the
crash message's step names (flows/iterate.py) and the trainer's state folders
(r3v/trainer/stages.py). A step's function in r3v/steps.py holds its recipe only; beginning,
"already finished" and recording are done around every step by `r3v.steps.step`.

Adding a step: one entry here and its function in r3v/steps.py (plus its task in tasks/steps.py
and its line in the flow, where it runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    """A table the step writes: its partition for the step's iteration (`per_iteration`), or every
    partition; not written when the step's record holds the fact `unless` (a skipped warm-up)."""

    name: str
    per_iteration: bool = True
    unless: str | None = None

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class Folder:
    """A model or adapter folder the step writes: `path` under the run folder (formatted with the
    iteration), or the path its record's fact `fact` names (the warm-up's model, which may be the
    source model itself when the warm-up is off)."""

    key: str
    path: str = ""
    fact: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    run_name: str  # the Prefect task run's name: `{iteration}` (and `{shard}`) filled in
    writes: tuple[Table | Folder, ...]
    reads: Callable[[Any, int], list[tuple[int, str]]]  # (config, iteration) -> [(iteration, step)]
    state: str = ""  # mid-training state, under the run folder (`{iteration}` filled in)
    formerly: str = ""  # the name older versions recorded it under (read with a deprecation warning)

    def task_run_name(self, iteration: int = 0) -> str:
        return self.run_name.format(iteration=iteration)


def _model(cfg, iteration: int) -> list[tuple[int, str]]:
    """M_k: the warm-up's model for k = 0, else iteration k's training."""
    return [(0, "warmup")] if iteration == 0 else [(iteration, "train")]


def _train_reads(cfg, iteration: int) -> list[tuple[int, str]]:
    continued = [(iteration - 1, "train")] if cfg.train.init == "continue" and iteration > 1 else []
    return [(iteration, "build_sets"), (0, "warmup"), *continued]


STEPS: dict[str, Step] = {s.name: s for s in (
    Step("prepare", "prepare", (Table("questions", per_iteration=False),), lambda cfg, k: []),
    Step("warmup", "warmup", (Folder("model", fact="base_model"), Table("train_log", unless="skipped")),
         lambda cfg, k: [(0, "prepare")], state="train_state/warmup", formerly="seed"),
    Step("rollout", "rollout-it{iteration}", (Table("rollouts"),),
         lambda cfg, k: [(0, "warmup")] if k == 1 else [(k - 1, "train")], formerly="sample"),
    Step("judge", "judge-it{iteration}", (Table("samples"),), lambda cfg, k: [(k, "rollout")]),
    Step("build_sets", "build_sets-it{iteration}", (Table("sets"),),
         lambda cfg, k: [(j, "judge") for j in range(1, k + 1)]),
    Step("train", "train-it{iteration}", (Folder("adapter", path="checkpoints/iteration={iteration}"),
                                          Table("train_log")), _train_reads, state="train_state/iteration={iteration}"),
    Step("evaluate", "evaluate-it{iteration}", (Table("eval"), Table("eval_metrics")), _model),
    Step("scale", "scale-it{iteration}", (Table("scaling_eval"), Table("scaling")), _model),
)}
"""The loop: prepare -> warmup -> evaluate(0), then per iteration k: rollout -> judge -> build_sets ->
train -> evaluate; `scale` is test-time scaling of a finished model, run on demand. (`judge` writes
`samples`, the judged pool: table names are the store layout users query, so they stay.)"""

FORMER_NAMES = {s.formerly: name for name, s in STEPS.items() if s.formerly}
"""{old step name: its name now}: run folders made by older versions hold their records under the
old names (`step=seed`, `step=sample`); r3v/ledger.py reads them as the new ones."""


def step_name(name: str) -> str:
    """The step's name now, for a name an older version recorded (`seed` -> `warmup`)."""
    return FORMER_NAMES.get(name, name)

SCALING_NS = (1, 3, 5, 8)
"""The N of test-time scaling (the `scale` step, `r3v scale`, the experiment's scaling table) unless
asked for others."""

SHARD_RUN_NAME = "rollout-it{iteration}-shard{shard}"
"""One rollout shard's task run (`rollout` is made of them; each is recorded in the `shards` table)."""
