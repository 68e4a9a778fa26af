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
from r3v.progress import quiet_libraries
from r3v.run import clean_partials, init_run, run_lock
from r3v.step_table import STEPS
from r3v.store import Store
from tasks import build_sets, evaluate, judge, prepare, report, train, warmup
from tasks.steps import finished_in_store


def _config(config: str | None = None, overrides: list[str] | None = None, run_name: str = "",
            iterations: int = 0):
    """The run's config from the flow's parameters (`run_name`/`iterations` override run.name /
    run.iterations when set): what the flow runs, and what its run name and crash hook read."""
    extra = list(overrides or [])
    if run_name:
        extra.append(f"run.name={run_name}")
    if iterations:
        extra.append(f"run.iterations={iterations}")
    return load_config(config, extra)


def _flow_run_name() -> str:
    """`r3v-<run name>`, the run name taken from the parameters or the config they point at."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    name = p.get("run_name")
    if not name:
        try:
            name = _config(p.get("config"), p.get("overrides")).run.name
        except (OSError, ValueError):  # a bad config fails in the flow itself, with its message
            name = "invalid-config"
    return f"r3v-{name}"


_SIGNALS = {9: "SIGKILL (kill -9, or the kernel's out-of-memory killer: its log, `dmesg`, says which)",
            15: "SIGTERM (stopped by a person, the scheduler or the machine shutting down)",
            2: "SIGINT (Ctrl-C)"}


def crash_message(prefect_message: str, run_dir: str | None) -> str:
    """What a crashed flow run's state says instead of Prefect's generic guess ("may be caused by
    exceeding memory limits"): how the process ended, what the run folder keeps, what Retry does."""
    import re

    m = re.search(r"status code:? (-?\d+)", prefect_message or "")
    code = int(m.group(1)) if m else None
    sig = -code if code is not None and code < 0 else (code - 128 if code is not None and code > 128 else None)
    how = (f"killed by {_SIGNALS.get(sig, f'signal {sig}')}" if sig else
           f"exited with status {code}" if code is not None else "ended without reporting a result")
    msg = f"The flow's process was {how}."
    if run_dir:
        try:
            done = Store(run_dir).query("SELECT iteration, step FROM src_steps ORDER BY finished_at").to_pylist()
        except Exception:  # noqa: BLE001 - a message must not fail
            done = []
        if done:
            last = done[-1]
            spec = STEPS.get(last["step"])  # the steps view reads former names as the names now
            name = spec.task_run_name(last["iteration"]) if spec else last["step"]
            msg += (f" {len(done)} finished steps are kept in {run_dir} (the last: {name}), with every finished "
                    f"rollout shard and the last mid-training checkpoint.")
        else:
            msg += f" No step had finished in {run_dir}."
    return msg + " Retry resumes it: finished steps show as Cached, the interrupted one continues."


def _explain_crash(flow, flow_run, state) -> None:
    """on_crashed hook (run by the serving process when the flow's process dies): replace the
    crash message with crash_message's, and end the task runs the process was running
    (`end_orphaned_task_runs`). The UI then says what the store says, which is what a retry goes by."""
    from prefect import get_client
    from prefect.states import Crashed

    run_dir = _run_dir_of(flow_run)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Crashed(message=crash_message(state.message, run_dir)), force=True)
    end_orphaned_task_runs(flow_run.id, run_dir, "the flow's process was killed while this ran; Retry resumes it")


def _run_dir_of(flow_run) -> str | None:
    try:
        return str(_config(**(flow_run.parameters or {})).run_dir)
    except (OSError, ValueError, TypeError):  # TypeError: parameters this flow does not take
        return None


def end_orphaned_task_runs(flow_run_id, run_dir: str | None, why: str) -> int:
    """End the task runs of `flow_run_id` that show Running or Pending but whose process is gone
    (left alone, they would show as Running forever beside the retried attempt's): Completed where
    the store holds their work as finished (written, then killed before the state reached the API),
    else Crashed with `why`. Returns how many were ended."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Completed, Crashed

    with get_client(sync_client=True) as client:
        running = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
                any_=[StateType.RUNNING, StateType.PENDING]))))
        for tr in running:
            if run_dir and finished_in_store(run_dir, tr.name):
                end = Completed(message="finished (its work is in the run's store) just before its process "
                                        "was killed, which it did not live to report; a retry does not redo it")
            else:
                end = Crashed(message=why)
            client.set_task_run_state(tr.id, end, force=True)
    return len(running)


def _end_previous_attempt(run_dir: str) -> None:
    """At the start of a retried attempt: the task runs a dead worker left Running (no process was
    left to run the crash hook; the server's heartbeat watch crashed the flow run, not its tasks)."""
    from prefect.runtime import flow_run

    if (flow_run.run_count or 1) <= 1 or not flow_run.id:
        return
    n = end_orphaned_task_runs(flow_run.id, run_dir, "its worker died while this ran (no heartbeat reached the "
                                                     "server); the retry resumes it from the run's store")
    if n:
        print(f"r3v: the previous attempt left {n} task runs Running (its worker died): marked ended", flush=True)


@flow(name="r3v", flow_run_name=_flow_run_name, log_prints=True, on_crashed=[_explain_crash])
def r3v_flow(config: str | None = None, overrides: list[str] | None = None, run_name: str = "",
             iterations: int = 0) -> str:
    """Run (or resume) an R3V run. `config`: a YAML path; `overrides`: `key=value` items;
    `run_name`/`iterations` override run.name / run.iterations when set."""
    quiet_libraries()  # no redrawn bars in a served run's logs
    cfg = _config(config, overrides, run_name, iterations)
    run_dir = str(init_run(cfg))
    with run_lock(run_dir, owner=_owner()):
        _end_previous_attempt(run_dir)  # what a dead worker left showing Running
        clean_partials(run_dir)  # what a killed attempt was writing
        prepare(run_dir)
        warmup(run_dir)  # M_0
        if cfg.eval.evaluate_m0:
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
