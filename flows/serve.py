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


def serve(limit: int | None = None) -> None:
    """Serve the deployments until Ctrl-C or SIGTERM, then pause them and stop cleanly. (Prefect's
    own `serve` handles SIGTERM by calling the runner's async stop without awaiting it: "coroutine
    'Runner.astop' was never awaited"; here SIGTERM takes the Ctrl-C path instead.)"""
    import asyncio

    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True, limit=limit)
    for d in deployments():
        runner.add_deployment(d)

    def stop(*_):
        raise KeyboardInterrupt

    runner.handle_sigterm = stop  # start() installs this attribute as the SIGTERM handler
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
