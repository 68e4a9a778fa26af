"""Shared fixtures, one of each per session.

- `small_model`: the embedded model's architecture and tokenizer with only a few pretraining
  steps (seconds to build): for the tests of plumbing, which need a real model, not a good one.
  The fast tier (`pytest -m "not slow"`) uses this one alone.
- `embedded_model`: the embedded model with tests/model.yaml's shorter pretraining (about 3 minutes
  to build; R3V_TEST_MODEL_CACHE=DIR reuses a cache that holds it). Slow tests only; every run a
  slow test starts gets `model_overrides`, so it finds this build in the session's cache.
- `harness`: one temporary Prefect server for every test that runs a flow.
- `flow_run`: one finished iteration of the flow.
- `seed_model`: a trained M_0 (flow_run's), which every test of later steps starts from instead of
  training its own (kept in the model cache, so CI's two lanes train it once: `SeedModelSlot`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A fresh model cache per session (the embedded model is built once into it, as on a new
    machine); R3V_TEST_MODEL_CACHE=DIR reuses a cache that already holds the build instead."""
    reuse = os.environ.get("R3V_TEST_MODEL_CACHE")
    return reuse if reuse else tmp_path_factory.mktemp("r3v-cache")


TEST_MODEL = Path(__file__).with_name("model.yaml")
"""The slow tier's model build: the default embedded model with fewer pretraining steps."""


@pytest.fixture(scope="session")
def model_overrides(cache_dir) -> list[str]:
    """`key=value` overrides every run of a slow test carries, so that it finds the slow tier's model
    (tests/model.yaml) in the session's cache instead of building the default one."""
    import yaml

    embedded = yaml.safe_load(TEST_MODEL.read_text())["model"]["embedded"]
    return [f"model.cache_dir={cache_dir}", *(f"model.embedded.{k}={v}" for k, v in embedded.items())]


@pytest.fixture(scope="session")
def embedded_model(model_overrides):
    """Path of the slow tier's embedded tiny VLM (tests/model.yaml), built into the session's cache."""
    import torch

    from r3v.config import load_config
    from r3v.embedded.model.build import ensure_built

    torch.set_num_threads(int(os.environ.get("R3V_TEST_THREADS", "2")))
    cfg = load_config(TEST_MODEL, model_overrides)
    return ensure_built(cfg.model.embedded, cfg.model.cache_dir)


SMALL_BUILD = {"vision_pretrain_steps": 2, "reading_pretrain_steps": 2, "text_pretrain_steps": 2}
"""The small model's build: the default config but for the pretraining steps (same tokenizer)."""


@pytest.fixture(scope="session")
def small_model(cache_dir):
    """Path of the embedded model's architecture with only SMALL_BUILD's pretraining steps."""
    import dataclasses

    import torch

    from r3v.config import load_config
    from r3v.embedded.model.build import ensure_built

    torch.set_num_threads(int(os.environ.get("R3V_TEST_THREADS", "2")))
    return ensure_built(dataclasses.replace(load_config().model.embedded, **SMALL_BUILD), cache_dir)


@pytest.fixture(scope="session")
def processor(small_model):
    """The embedded model's processor (its tokenizer does not depend on the pretraining steps)."""
    from r3v.models import load_processor

    return load_processor(small_model)


FLOW_OVERRIDES = [
    "run.iterations=1", "data.embedded.n_seed=200", "data.embedded.n_train=24", "data.embedded.n_test=12",
    "warmup.steps=100", "warmup.batch_size=16", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
    "rollout.max_new_tokens=64",
]


@pytest.fixture(scope="session")
def harness():
    """One temporary Prefect server (prefect_test_harness) for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class SeedModelSlot:
    """Where the slow tier's trained M_0 lives in the model cache (a key of what makes it: the
    model, torch and transformers, FLOW_OVERRIDES, r3v's code), and a lock on it, so that CI's two
    lanes, which share one cache, train it once: whoever makes it holds the lock meanwhile, the
    other lane waits for it and reuses it."""

    def __init__(self, cache_dir, embedded_model: Path):
        import hashlib

        import torch
        import transformers

        code = sorted(Path(__file__).parents[1].joinpath("r3v").rglob("*.py"))
        blob = [embedded_model.name, torch.__version__, transformers.__version__, *FLOW_OVERRIDES,
                *(p.read_text() for p in code)]
        key = hashlib.sha256("\0".join(blob).encode()).hexdigest()[:12]
        self.path = Path(cache_dir) / "seed-models" / f"{embedded_model.name}-m0-{key}"

    def ready(self) -> bool:
        return (self.path / "config.json").exists()

    @contextlib.contextmanager
    def locked(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self

    def keep(self, trained: Path) -> None:
        """Copy a trained M_0 into the slot (whole or not at all); call it holding the lock."""
        import shutil

        if self.ready():
            return
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(trained, tmp)
        tmp.rename(self.path)


@pytest.fixture(scope="session")
def flow_run(tmp_path_factory, model_overrides, cache_dir, embedded_model, harness):
    """One iteration of the real flow on the tiny model (run twice: the second is a no-op resume).
    Its M_0 (checkpoints/seed) is kept as `seed_model` when the cache has none yet, holding the
    slot's lock meanwhile (the vLLM lane beside waits for it instead of training its own)."""
    from flows.iterate import r3v_flow

    slot = SeedModelSlot(cache_dir, embedded_model)
    root = tmp_path_factory.mktemp("runs")
    overrides = FLOW_OVERRIDES + model_overrides + [f"run.root={root}"]
    with slot.locked() if not slot.ready() else contextlib.nullcontext():
        md = r3v_flow(overrides=overrides, run_name="it")
        slot.keep(root / "it" / "checkpoints" / "warmup")
    again = r3v_flow(overrides=overrides, run_name="it")  # every step finished: a no-op resume
    assert md == again and "| 1 |" in md
    return root / "it"


@pytest.fixture(scope="session")
def seed_model(request, tmp_path_factory, model_overrides, cache_dir, embedded_model) -> Path:
    """A trained M_0 (FLOW_OVERRIDES' warm-up of the slow tier's model) for every test that starts
    after the seed stage: `model.source=<it>`, `warmup.enabled=false`. Made once for CI's two lanes
    (`SeedModelSlot`): a session that runs `flow_run` takes that run's; one that does not (the
    vLLM lane) waits for the other lane's, or runs the seed stage alone if none is being made. (A
    test that compares against a run trained in its own environment takes `flow_run`'s M_0
    instead: another environment, e.g. with vLLM imported, need not reproduce it bit for bit.)"""
    slot = SeedModelSlot(cache_dir, embedded_model)
    if any("flow_run" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("flow_run")  # keeps its M_0 in the slot, unless the slot had one
        return slot.path
    with slot.locked():
        if not slot.ready():
            from r3v import steps
            from r3v.config import load_config
            from r3v.run import init_run

            root = tmp_path_factory.mktemp("seed-model")
            run_dir = init_run(load_config(None, FLOW_OVERRIDES + model_overrides + [f"run.root={root}"]))
            steps.prepare(str(run_dir))
            steps.warmup(str(run_dir))
            slot.keep(run_dir / "checkpoints" / "warmup")
    return slot.path


FIRST_SLOW = ("test_flow.py",)
"""Slow test files that run before the rest of the slow tier: `flow_run`, which they start, makes
the M_0 that CI's vLLM lane, beside this one, waits for."""


def pytest_collection_modifyitems(config, items):
    """The fast tier first (tests not marked slow, in file order), then the slow tier (FIRST_SLOW's
    files first, each file's tests together): a plain `pytest -q` (what CI runs) reports a broken
    unit within its first minutes.

    `R3V_IN_OTHER_LANE=a.py,b.py` skips those files' tests, saying so: CI (.ci/run) runs them in its
    other lane, beside this one, to balance the two lanes' wall time. Unset (anywhere else), all run."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is not None, item.path.name not in FIRST_SLOW))
    elsewhere = {f for f in os.environ.get("R3V_IN_OTHER_LANE", "").split(",") if f}
    skip = pytest.mark.skip(reason="CI runs this file in its other lane (.ci/run, R3V_IN_OTHER_LANE)")
    for item in items:
        if item.path.name in elsewhere:
            item.add_marker(skip)
