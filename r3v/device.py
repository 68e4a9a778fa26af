"""Where models run: `run.device` resolved against what torch sees, and the process's rank.

`auto` is the first accelerator torch sees (CUDA, then Apple's MPS), else the CPU. Under
torchrun each process takes the GPU of its local rank (`cuda:N` too). A device that is not there is a
`ConfigError` that names the key, before any model is loaded.
"""

from __future__ import annotations

import os

import torch

from r3v.config import ConfigError


def local_rank() -> int:
    """This process's rank on its node under torchrun / accelerate launch (0 when launched alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve(spec: str = "auto") -> torch.device:
    """`run.device` -> the torch.device this process uses."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("mps") if _mps() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps():
            raise ConfigError("run.device=mps: torch sees no MPS device (Apple silicon, torch built with MPS); "
                              "use run.device=auto or cpu")
        return torch.device("mps")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device={spec}: torch sees no CUDA device (torch {torch.__version__}, "
                              f"built with CUDA {torch.version.cuda}); use run.device=auto or cpu")
        count = torch.cuda.device_count()
        # under torchrun every process takes its local rank's GPU, whatever N says
        index = int(spec.split(":", 1)[1]) if ":" in spec and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) == 1 \
            else local_rank()
        if index >= count:
            raise ConfigError(f"run.device={spec}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    raise ConfigError(f"run.device: {spec!r} is not one of auto, cpu, cuda, cuda:N, mps")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """`train.precision` -> the autocast dtype (None: float32, no autocast)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
