"""A non-editable install (a wheel, as `pip install .` or a Docker image makes it) runs the smoke
config: the package carries everything it reads at run time (the SQL views are package data).

The wheel is built from this checkout and installed with --no-deps into a fresh venv whose
dependencies come from the test environment's site-packages (a .pth file: no network, seconds);
the run starts outside the checkout, so nothing can be read from it by accident.
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1200, **kw)


def test_wheel_install_runs_the_smoke_config(tmp_path, model_overrides, seed_model):
    """From the session's trained M_0 (the seed stage is the same code installed either way)."""
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(ROOT)], cwd=tmp_path)
    wheel = next(wheels.glob("r3v-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the test environment's packages, after the venv's own (r3v's editable finder is a .pth there,
    # and a path line of a .pth does not run the .pth files of the folder it adds)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "R3V_SQL_DIR")}  # nothing but the install
    where = _run([str(py), "-c", "import r3v, r3v.store as s; print(r3v.__file__); print(s.sql_dir())"],
                 cwd=tmp_path, env=env).stdout.split()
    assert where[0].startswith(str(site)) and Path(where[1]).is_dir(), where
    assert {p.name for p in Path(where[1]).glob("*.sql")} >= {"samples.sql", "select_sets.sql", "metrics.sql"}
    out = _run([str(venv / "bin" / "r3v"), "run", str(ROOT / "configs" / "smoke.yaml"), f"run.root={tmp_path / 'runs'}",
                *model_overrides, f"model.source={seed_model}", "warmup.enabled=false"], cwd=tmp_path, env=env).stdout
    assert "| 1 |" in out
    meta = json.loads((tmp_path / "runs" / "smoke" / "run.json").read_text())
    assert Path(meta["source_model"]) == Path(seed_model).resolve()
    rows = _run([str(venv / "bin" / "r3v"), "sql", str(tmp_path / "runs" / "smoke"),
                 "SELECT count(*) AS n FROM sft_examples"], cwd=tmp_path, env=env).stdout
    assert rows.strip()
