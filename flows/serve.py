"""Serve the flows as deployments `r3v/iterate` and `r3v-experiment/experiment`.

    prefect server start                       # in another shell
    PREFECT_API_URL=http://127.0.0.1:4200/api python flows/serve.py
    prefect deployment run r3v/iterate -p config=configs/embedded.yaml
    prefect deployment run r3v-experiment/experiment -p config=configs/embedded.yaml -p iterations=3
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.experiment import experiment_flow  # noqa: E402
from flows.iterate import r3v_flow  # noqa: E402


def deployments() -> list:
    return [r3v_flow.to_deployment(name="iterate"), experiment_flow.to_deployment(name="experiment")]


CRASH_AUTOMATION = "r3v: flow runs whose heartbeats stopped are Crashed"


def crash_after_seconds() -> int:
    """How long the server waits after a flow run's last heartbeat before calling it Crashed:
    `R3V_CRASH_AFTER` seconds, by default three heartbeats (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`,
    180 s by default, at least 30), so a beat delayed by a busy process is not a crash."""
    import os

    from prefect.settings import get_current_settings

    beat = get_current_settings().flows.heartbeat_frequency or 180
    return int(os.environ.get("R3V_CRASH_AFTER") or 3 * beat)


def ensure_crash_automation(within: int) -> str:
    """The server's own watch for dead workers, created (or brought up to date) when a worker starts.

    A flow run served here emits a heartbeat event every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`
    seconds. When a worker host is lost (its whole process group killed, the machine gone), no
    process is left to report anything and the run would show `Running` for good; this automation
    (Prefect's documented "detect zombie flows" pattern) makes the server mark such a run Crashed
    `within` seconds after its last heartbeat, so the UI offers Retry, which resumes it from the
    store. Returns what was done: "created", "updated" or "kept"."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1, within=timedelta(seconds=within))
    action = ChangeFlowRunState(
        state=StateType.CRASHED,
        message=f"No heartbeat from the flow run's process for {within} s: its worker died or lost the "
                "server. Retry resumes it from the run's store (finished steps are Cached).")
    try:
        existing = Automation.read(name=CRASH_AUTOMATION)
    except ValueError:
        Automation(name=CRASH_AUTOMATION, description=ensure_crash_automation.__doc__.split("\n\n")[1],
                   trigger=trigger, actions=[action]).create()
        return "created"
    if existing.trigger.within == trigger.within and existing.enabled:
        return "kept"
    existing.trigger, existing.actions, existing.enabled = trigger, [action], True
    existing.update()
    return "updated"


def serve(limit: int | None = None, stop_within: float = 10.0) -> None:
    """Serve the deployments until Ctrl-C or SIGTERM, then pause them and stop. (Prefect's own
    `serve` handles SIGTERM by calling the runner's async stop without awaiting it: "coroutine
    'Runner.astop' was never awaited"; here SIGTERM takes the Ctrl-C path instead.) Stopping never
    takes more than `stop_within` seconds: pausing the deployments talks to the server, which may be
    gone already (`docker compose down` stops the services together); the process then exits
    anyway, and a flow run it was running is Crashed by the server's heartbeat watch
    (`ensure_crash_automation`), ready for Retry."""
    import asyncio
    import os
    import signal
    import threading

    from prefect.runner import Runner

    within = crash_after_seconds()
    try:
        done = ensure_crash_automation(within)
        print(f"r3v serve: the server marks a run Crashed {within} s after its last heartbeat "
              f"(automation {CRASH_AUTOMATION!r}: {done})", flush=True)
    except Exception as e:  # an old server without automations: serve anyway, and say what is missing
        print(f"r3v serve: WARNING: could not set up the server's crash watch ({type(e).__name__}: {e}); "
              "a run whose worker dies will show Running until set to Crashed by hand", flush=True)
    runner = Runner(pause_on_shutdown=True, limit=limit)
    for d in deployments():
        runner.add_deployment(d)

    def stop(*_):
        deadline = threading.Timer(stop_within, lambda: (print(f"r3v serve: not stopped within {stop_within:.0f} s "
                                                               "(the server does not answer); exiting", flush=True),
                                                         os._exit(143)))
        deadline.daemon = True
        deadline.start()
        raise KeyboardInterrupt

    runner.handle_sigterm = stop  # start() installs this attribute as the SIGTERM handler
    signal.signal(signal.SIGINT, stop)  # Ctrl-C: the same bounded stop
    print("Serving deployments r3v/iterate and r3v-experiment/experiment. Start a run with\n"
          "    r3v submit CONFIG [key=value ...]    (the flow run is named r3v-<run name> at once)\n"
          "or  prefect deployment run r3v/iterate --flow-run-name r3v-NAME -p config=CONFIG\n"
          "Ctrl-C or SIGTERM stops serving (a flow run in progress stops with it; Retry resumes it).", flush=True)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        print("r3v serve: stopped; the deployments are paused until served again", flush=True)


if __name__ == "__main__":
    serve()
