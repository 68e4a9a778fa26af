"""Shared fixtures, one of each per session.

- `small_model`: the embedded model's architecture and tokenizer with only a few pretraining
  steps (seconds to build): for the tests of plumbing, which need a real model, not a good one.
  The fast tier (`pytest -m "not slow"`) uses this one alone.
- `embedded_model`: the default embedded model, pretrained as `r3v run` builds it (minutes;
  R3V_TEST_MODEL_CACHE=DIR reuses a cache that holds it). Slow tests only.
- `harness`: one temporary Prefect server for every test that runs a flow.
- `flow_run`: one finished iteration of the flow; its checkpoints/seed is the trained M_0 that
  tests of later steps start from instead of training their own.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A fresh model cache per session (the embedded model is built once into it, as on a new
    machine); R3V_TEST_MODEL_CACHE=DIR reuses a cache that already holds the build instead."""
    reuse = os.environ.get("R3V_TEST_MODEL_CACHE")
    return reuse if reuse else tmp_path_factory.mktemp("r3v-cache")


@pytest.fixture(scope="session")
def embedded_model(cache_dir):
    """Path of the default embedded tiny VLM, built into the session's cache."""
    import torch

    from r3v.config import load_config
    from r3v.embedded.model.build import ensure_built

    torch.set_num_threads(int(os.environ.get("R3V_TEST_THREADS", "2")))
    cfg = load_config()
    return ensure_built(cfg.model.embedded, cache_dir)


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
    "seed.steps=100", "seed.batch_size=16", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
    "rollout.max_new_tokens=64",
]


@pytest.fixture(scope="session")
def harness():
    """One temporary Prefect server (prefect_test_harness) for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def flow_run(tmp_path_factory, cache_dir, embedded_model, harness):
    """One iteration of the real flow on the tiny model (run twice: the second is a no-op resume);
    its seed model (checkpoints/seed) is the trained M_0 other tests start from."""
    from flows.iterate import r3v_flow

    root = tmp_path_factory.mktemp("runs")
    overrides = FLOW_OVERRIDES + [f"run.root={root}", f"model.cache_dir={cache_dir}"]
    md = r3v_flow(overrides=overrides, run_name="it")
    again = r3v_flow(overrides=overrides, run_name="it")  # every step finished: a no-op resume
    assert md == again and "| 1 |" in md
    return root / "it"


def pytest_collection_modifyitems(config, items):
    """The fast tier first (tests not marked slow, in file order), then the slow tier: a plain
    `pytest -q` (what CI runs) reports a broken unit within its first minutes."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
