"""The experiment runner as one Prefect flow: seed model, STaR, R3V and its ablations side by side.

    M_0 <- the seed arm (warm-up once, evaluated as iteration 0)
    for arm in star, r3v, r3v-no-refine, r3v-no-select:
        adopt M_0 (and the iteration-1 rollouts of the first trained arm: same model, same seeds)
        run the r3v flow with the arm's loss weights for K iterations
    for each arm: test-time compute scaling of its final model, N in ns
    compare: results.md/.parquet, accuracy.png, scaling.parquet/.png
With seeds: all of it once per seed (other data, samples and training), then the summary over
seeds: summary.md (mean ± 95% interval, per level, McNemar per seed), summary.parquet, plots.

`r3v experiment CONFIG` runs it in-process; each arm is a subflow and an ordinary run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from flows.iterate import r3v_flow
from r3v.analysis.experiment import ARMS, DEFAULT_ARMS, DEFAULT_NS, SEED_ARM, arm_overrides, experiment_dir
from r3v.analysis.replicates import seed_dir, seed_overrides
from r3v.config import load_config
from r3v.run import init_run
from tasks import adopt, experiment_report, experiment_summary, scale


@flow(name="r3v-experiment", flow_run_name="r3v-experiment-{name}", log_prints=True)
def experiment_flow(config: str | None = None, overrides: list[str] | None = None, name: str = "experiment",
                    iterations: int = 3, arms: list[str] | None = None, ns: list[int] | None = None,
                    seeds: list[int] | None = None) -> str:
    """Run (or resume) an experiment in `<run.root>/<name>/`; returns the comparison Markdown.
    With `seeds`, the whole comparison once per seed in `<name>/seed=<s>/`, then the summary over
    seeds (mean ± 95% interval, paired tests per seed) in `<name>/summary.md`."""
    arms = list(arms or DEFAULT_ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arms {unknown} (known: {', '.join(ARMS)})")
    arms = [SEED_ARM] + [a for a in arms if a != SEED_ARM]  # M_0 comes from the seed arm
    ns = sorted(set(ns or DEFAULT_NS))
    overrides = list(overrides or [])
    cfg = load_config(config, overrides)
    exp_dir = experiment_dir(cfg, name)
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "experiment.json").write_text(json.dumps(
        {"config": config, "overrides": overrides, "arms": arms, "iterations": iterations, "ns": ns,
         "seeds": seeds}, indent=2))
    if seeds is None:
        md = compare_arms(config, overrides, exp_dir, iterations, arms, ns)
    else:
        for s in seeds:
            compare_arms(config, overrides + seed_overrides(cfg, s), seed_dir(exp_dir, s), iterations, arms, ns)
        md = experiment_summary(str(exp_dir), list(seeds), arms, config, overrides)
    print(md)
    return md


def compare_arms(config: str | None, overrides: list[str], exp_dir: Path, iterations: int, arms: list[str],
                 ns: list[int]) -> str:
    """Every arm in `exp_dir/arms/`, sharing the seed arm's M_0; then the arms' comparison."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    seed_dir_, donor_dir = None, None
    for arm in arms:
        arm_ov = overrides + arm_overrides(exp_dir, arm, iterations)
        arm_dir = str(init_run(load_config(config, arm_ov)))
        if arm == SEED_ARM:
            seed_dir_ = arm_dir
        else:
            adopt(arm_dir, seed_dir_, donor_dir)  # M_0, iteration 0 and (when sampled) iteration-1 rollouts
        r3v_flow(config=config, overrides=arm_ov)
        if arm != SEED_ARM and donor_dir is None:
            donor_dir = arm_dir
        scale(arm_dir, 0 if arm == SEED_ARM else iterations, ns)
    return experiment_report(str(exp_dir), arms)
