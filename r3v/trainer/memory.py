"""Peak memory of a block of code, for benchmarks and tests: the CUDA allocator's high-water mark
on a GPU; on the CPU the process's resident-set high-water mark (Linux), reset when the block
starts, with glibc set to return freed large blocks at once so the mark follows the tensors."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

_M_MMAP_THRESHOLD = -3


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) * 1024


@contextmanager
def peak(device: torch.device | str = "cpu") -> Iterator[dict]:
    """`with peak(dev) as m: ...` -> m["bytes"]: the most memory in use during the block above
    what was in use when it started; m["what"]: what was measured."""
    device = torch.device(device)
    out: dict = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out.update(bytes=torch.cuda.max_memory_allocated(device) - before, what="cuda max_memory_allocated")
        return
    if not Path("/proc/self/clear_refs").exists():  # not Linux: nothing to read
        yield out
        out.update(bytes=0, what="not measured (no /proc on this platform)")
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)  # tensors freed go back to the OS: RSS tracks live memory
    libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    yield out
    out.update(bytes=_status("VmHWM") - before, what="process RSS high-water mark")
