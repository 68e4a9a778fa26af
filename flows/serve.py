"""Serve the flow as deployment `r3v/iterate` (run it with `prefect deployment run r3v/iterate`).

    prefect server start                       # in another shell
    PREFECT_API_URL=http://127.0.0.1:4200/api python flows/serve.py
    prefect deployment run r3v/iterate -p config=configs/embedded.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.iterate import r3v_flow  # noqa: E402


def serve(limit: int | None = None) -> None:
    r3v_flow.serve(name="iterate", limit=limit)


if __name__ == "__main__":
    serve()
