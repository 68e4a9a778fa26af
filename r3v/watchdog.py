"""Leave nothing behind when `r3v run` is killed.

`r3v run` starts processes it does not own the code of: Prefect's temporary API server (a uvicorn
subprocess, ~230 MB), and training workers (torchrun). When `r3v run` exits normally they are
stopped by their owners; when it is SIGKILLed nobody stops them and they run on as orphans. The
watchdog is a tiny separate process (`python -m r3v.watchdog PID`, its own session, so a Ctrl-C
to the terminal's process group reaches it only through PID's end) that notes the descendants of
PID as they appear and, once PID is gone, sends them SIGTERM, then SIGKILL to what is left after
a grace period. Linux only (it reads /proc); elsewhere `start` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 5.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] == "Z":  # a zombie is gone for our purpose
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int, known: dict[int, int]) -> dict[int, int]:
    """{pid: start time} of every live process below `root`, plus the still-live ones of `known`
    (children reparented after their parent died stay watched)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry.name))
                starts[int(entry.name)] = st[1]
    out = {pid: start for pid, start in known.items() if starts.get(pid) == start}  # same process, not a reused pid
    todo = [root, *out]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out and child != os.getpid():
                out[child] = starts[child]
                todo.append(child)
    return out


def _signal_all(procs: dict[int, int], sig: int) -> None:
    for pid in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already, or not ours
            os.kill(pid, sig)


def watch(pid: int) -> int:
    """Track `pid`'s descendants until it ends; then stop those still running. Returns how many."""
    start = _stat(pid)
    if start is None:
        return 0
    known: dict[int, int] = {}
    while (st := _stat(pid)) is not None and st[1] == start[1]:
        known = descendants(pid, known)
        time.sleep(POLL_S)
    left = descendants(pid, known)
    if not left:
        return 0
    _signal_all(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {p: s for p, s in left.items() if (st := _stat(p)) is not None and st[1] == s}
    _signal_all(left, signal.SIGKILL)
    return len(left)


def start(pid: int | None = None) -> subprocess.Popen | None:
    """Start the watchdog of `pid` (default: this process); None where /proc is not there."""
    if not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen([sys.executable, "-m", "r3v.watchdog", str(pid or os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the run; the watchdog cleans up after it
    sys.exit(0 if watch(int(sys.argv[1])) >= 0 else 1)
