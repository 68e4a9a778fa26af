"""The R3V loop as one Prefect flow (Cheng et al., 2025, Algorithm 1).

    M_0 <- warm-up on the seed split (gold rationales)
    for k = 1..K:
        D_k  <- sample N rationales per question with M_{k-1}, judge each final answer
        pool <- pool ∪ D_k
        build SFT (positives), refine (y- -> y+) and select (3 candidates -> answer) sets from pool
        M_k  <- train M_0 (+ fresh LoRA) on L_SFT + L_REF + L_SEL
        evaluate M_k: pass@1, maj@N, oracle@N, select@N

`r3v run CONFIG` runs this flow in-process; `flows/serve.py` serves it as deployment
`r3v/iterate`. Each step is one task over the run folder (the rollout: one task per shard,
flows/rollout.py); a retried flow run skips finished steps and shards. One run folder has one
writer: a second flow on the same folder is refused while the first holds its lock.
"""

from __future__ import annotations

from prefect import flow

from flows.rollout import rollout
from r3v.config import load_config
from r3v.run import clean_partials, init_run, run_lock
from tasks import build_sets, evaluate, judge, prepare, report, seed, train


def _flow_run_name() -> str:
    """`r3v-<run name>`, the run name taken from the parameters or the config they point at."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    name = p.get("run_name")
    if not name:
        try:
            name = load_config(p.get("config"), p.get("overrides")).run.name
        except (OSError, ValueError):  # a bad config fails in the flow itself, with its message
            name = "invalid-config"
    return f"r3v-{name}"


@flow(name="r3v", flow_run_name=_flow_run_name, log_prints=True)
def r3v_flow(config: str | None = None, overrides: list[str] | None = None, run_name: str = "",
             iterations: int = 0) -> str:
    """Run (or resume) an R3V run. `config`: a YAML path; `overrides`: `key=value` items;
    `run_name`/`iterations` override run.name / run.iterations when set."""
    extra = list(overrides or [])
    if run_name:
        extra.append(f"run.name={run_name}")
    if iterations:
        extra.append(f"run.iterations={iterations}")
    cfg = load_config(config, extra)
    run_dir = str(init_run(cfg))
    with run_lock(run_dir, owner=_owner()):
        clean_partials(run_dir)  # what a killed attempt was writing
        prepare(run_dir)
        seed(run_dir)  # M_0
        if cfg.eval.evaluate_seed:
            evaluate(run_dir, 0)
        for k in range(1, cfg.run.iterations + 1):
            rollout(run_dir, k, cfg.orchestration)  # N rationales per question with M_{k-1}, by shards
            judge(run_dir, k)  # final answer vs gold -> positives / negatives in the pool
            build_sets(run_dir, k)  # SFT, refine, select from the pool of iterations 1..k
            train(run_dir, k)  # M_k = M_0 + LoRA trained on L_SFT + L_REF + L_SEL
            evaluate(run_dir, k)  # pass@1, maj@N, oracle@N, select@N
        return report(run_dir)


def _owner() -> dict:
    from prefect.runtime import flow_run

    return {"flow_run": flow_run.name, "flow_run_id": flow_run.id}
