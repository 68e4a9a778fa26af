#!/usr/bin/env bash
# Create .venv and install r3v with its dev tools. Idempotent.
#   R3V_PYTHON=python3.11 bash scripts/install.sh
# torch is installed first, pinned, so that the range in pyproject.toml (which 2.13.0 satisfies)
# installs nothing more; on a GPU machine install the torch build you need before this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${R3V_PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
# PyPI's torchvision is a CUDA build that breaks transformers' image processors on a CPU machine.
if .venv/bin/python -c "import torchvision" 2>/dev/null && ! .venv/bin/python -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
  echo "warning: torchvision is installed in .venv; on a CPU-only machine remove it (pip uninstall torchvision)" >&2
fi
echo "r3v installed in .venv ($(.venv/bin/python -c 'import torch,transformers;print("torch",torch.__version__,"transformers",transformers.__version__)'))"
