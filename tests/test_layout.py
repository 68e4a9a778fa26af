"""The loop's light modules stay light: importing them loads no torch, transformers, peft, vLLM or
Prefect. That is the one reason first-party imports are left inside functions (issue 34): a model
part (r3v.models, r3v.trainer.loop, a backend) is imported where a model is used, so `r3v sql`,
`r3v config explain`, the ledger and the Prefect glue's cache keys start without loading torch."""

from __future__ import annotations

import subprocess
import sys

LIGHT = ["r3v.cli", "r3v.config", "r3v.store", "r3v.run", "r3v.ledger", "r3v.steps", "r3v.step_table", "r3v.trainer.launch",
         "r3v.trainer.stages", "r3v.judge", "r3v.sets", "r3v.evaluate", "r3v.datasets", "r3v.rollout", "r3v.sq.selfq",
         "r3v.sq.qar", "r3v.analysis.report"]
HEAVY = ["torch", "transformers", "peft", "vllm", "prefect"]


def test_light_modules_import_no_heavy_dependency():
    code = (f"import importlib, sys\nfor m in {LIGHT!r}: importlib.import_module(m)\n"
            f"print(','.join(h for h in {HEAVY!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the light modules loaded {out}: keep that import inside the function that needs it"
