"""The deployment path of README's "docker compose" section, walked as a person walks it, with the
UI's screens: PostgreSQL, `prefect server start` on it, `r3v serve`, a submitted run, the worker
host lost (the worker's process group and the flow's process SIGKILLed), the run Crashed by the
server, a new worker, Retry, completion. The same topology as the compose file, as processes
(there is no container engine on the development machine). Screenshots by headless chromium
(Debian: `apt-get install chromium`) into docs/deployment/.

    .venv/bin/python scripts/deployment_screens.py [--config configs/smoke.yaml] [--out docs/deployment]

It needs PostgreSQL's server tools (`initdb`, `pg_ctl`; Debian's postgresql package) and prints
each step with its wall time. Nothing here is used by the library or the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

from test_served import Postgres, Server, _pg_bin, _wait  # noqa: E402  (the test's own processes)


def shot(url: str, out: Path, wait_ms: int = 12000) -> None:
    """A screenshot of `url` as a person's browser shows it, once the page's scripts have run."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        print(f"no chromium here: {out.name} not taken")
        return
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--virtual-time-budget={wait_ms}", "--window-size=1500,1000", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=120)
    print(f"  screenshot {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/smoke.yaml")
    ap.add_argument("--out", default=str(ROOT / "docs" / "deployment"))
    ns = ap.parse_args()
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    say = lambda what: print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)  # noqa: E731
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"r3v-deploy-{os.getpid()}"
    pg = Postgres(_pg_bin())
    say(f"PostgreSQL on 127.0.0.1:{pg.port}")
    srv = Server(home, pg.url)
    ui = srv.api.removesuffix("/api")
    say(f"prefect server start on it: UI {ui}")
    runs = home / "runs"
    try:
        srv.start([str(BIN / "r3v"), "serve"], "worker")
        while (sub := srv.cli("r3v", "submit", ns.config, f"run.root={runs}", "run.name=deploy-demo",
                              check=False)).returncode != 0:
            time.sleep(1)
        fid = re.search(r"\(([0-9a-f-]{36})\)", sub.stdout).group(1)
        run_dir = runs / "deploy-demo"
        say(f"r3v submit {ns.config}: flow run r3v-deploy-demo ({fid})")
        _wait(lambda: (run_dir / "steps" / "iteration=0" / "step=warmup").is_dir(), 1800, "the seed model")
        say("seed model trained; losing the worker host")
        shot(f"{ui}/runs/flow-run/{fid}", out / "1-running.png")
        pid = json.loads((run_dir / ".lock").read_text())["pid"]
        os.killpg(srv.procs[-1].pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _wait(lambda: srv.state(fid) == "CRASHED", 600, "the server to crash the run", 1)
        say(f"the server marked the run Crashed {time.monotonic() - killed:.0f} s after the kill: "
            f"{srv.flow_run(fid)['state']['message']}")
        shot(f"{ui}/runs/flow-run/{fid}", out / "2-crashed-by-the-server.png")
        srv.start([str(BIN / "r3v"), "serve"], "worker-2")
        time.sleep(5)
        srv.cli("prefect", "flow-run", "retry", fid)
        say("a new r3v serve; Retry (prefect flow-run retry = the UI's Retry button)")
        _wait(lambda: srv.state(fid) in {"COMPLETED", "FAILED", "CRASHED"}, 3600, "the retried run", 2)
        states = {}
        body = {"flow_runs": {"id": {"any_": [fid]}}, "limit": 200}
        for tr in httpx.post(f"{srv.api}/task_runs/filter", json=body, timeout=10).json():
            states.setdefault(tr["name"], []).append(tr["state"]["name"])
        say(f"retried run {srv.state(fid)}; task runs: {states}")
        shot(f"{ui}/runs/flow-run/{fid}", out / "3-retried-completed.png")
    finally:
        srv.stop()
        pg.stop()
        shutil.rmtree(home, ignore_errors=True)
    say("done")


if __name__ == "__main__":
    main()
