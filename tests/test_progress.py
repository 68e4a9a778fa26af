"""Progress where output is not a terminal: one log line per update, never a redrawn bar."""

import logging

from r3v import progress


def test_line_progress_logs_lines_not_frames(caplog, monkeypatch):
    monkeypatch.setenv("R3V_PROGRESS", "lines")
    assert not progress.interactive()
    caplog.set_level(logging.INFO, logger="r3v.progress")
    bar = progress.bar(range(2, 5), desc="train", unit="step", initial=2, total=5, every=3600)
    assert isinstance(bar, progress.LineProgress)
    seen = []
    for step in bar:
        seen.append(step)
        bar.set_postfix(loss="1.234")
    assert seen == [2, 3, 4]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("train: 5/5 step (100%) loss=1.234,"), lines  # only the end
    assert not any("\r" in m for m in lines)
    quiet = progress.bar(total=3, desc="rollout", disable=True)
    quiet.update(3)
    assert len(caplog.records) == 1  # disabled: nothing
