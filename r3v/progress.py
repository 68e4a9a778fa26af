"""Progress bars that read well in a terminal and in a log.

In a terminal, `bar` is tqdm's bar. Anywhere else (a served Prefect flow run, CI, `> log.txt`),
a redrawn bar would fill the log with carriage-return frames, so `bar` writes one log line per
update instead, at most every `every` seconds (and at the end): `train: 40/200 step (20%)
loss=1.234, 12 s`. `quiet_libraries()` turns the libraries' own bars (transformers' "Loading
weights", huggingface_hub's) off where output is not a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable

log = logging.getLogger("r3v.progress")


def interactive() -> bool:
    """Whether progress goes to a terminal (stderr is one and R3V_PROGRESS is not `lines`)."""
    return os.environ.get("R3V_PROGRESS", "auto") != "lines" and sys.stderr.isatty()


class LineProgress:
    """tqdm's interface as far as r3v uses it (iterate, update, set_postfix, close), one log line
    per update at most every `every` seconds."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, every: float = 30.0, disable: bool = False, **_):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n, self.every, self.disable, self.postfix = initial, every, disable, ""
        self.t0 = self.last = time.monotonic()

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and (now - self.last >= self.every or (self.total and self.n >= self.total)):
            self.last = now
            share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            extra = f" {self.postfix}," if self.postfix else ""
            log.info("%s: %d/%s %s%s%s %.0f s", self.desc, self.n, self.total or "?", self.unit, share, extra, now - self.t0)

    def close(self) -> None:
        """Nothing to close: the last update has written its line (tqdm's interface)."""


def bar(iterable: Iterable | None = None, **kw):
    """A tqdm bar in a terminal, else a LineProgress (same arguments)."""
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, **kw)
    return LineProgress(iterable, **kw)


def quiet_libraries() -> None:
    """Where output is not a terminal, no library draws a progress bar (they would redraw into logs)."""
    if interactive():
        return
    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm >= 4.66 reads its defaults from TQDM_* variables
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
