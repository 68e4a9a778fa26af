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

from prefect import serve as prefect_serve  # noqa: E402

from flows.experiment import experiment_flow  # noqa: E402
from flows.iterate import r3v_flow  # noqa: E402


def deployments() -> list:
    return [r3v_flow.to_deployment(name="iterate"), experiment_flow.to_deployment(name="experiment")]


def serve(limit: int | None = None) -> None:
    prefect_serve(*deployments(), limit=limit)


if __name__ == "__main__":
    serve()
