"""Shared fixtures: the embedded model built once per session into a temporary cache."""

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


@pytest.fixture(scope="session")
def processor(embedded_model):
    from r3v.models import load_processor

    return load_processor(embedded_model)


FLOW_OVERRIDES = [
    "run.iterations=1", "data.embedded.n_seed=200", "data.embedded.n_train=24", "data.embedded.n_test=12",
    "seed.steps=100", "seed.batch_size=16", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
    "rollout.max_new_tokens=64",
]


@pytest.fixture(scope="session")
def flow_run(tmp_path_factory, cache_dir, embedded_model):
    """One iteration of the real flow on the tiny model (run twice: the second is a no-op resume);
    its seed model (checkpoints/seed) is the trained M_0 other tests start from."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.iterate import r3v_flow

    root = tmp_path_factory.mktemp("runs")
    overrides = FLOW_OVERRIDES + [f"run.root={root}", f"model.cache_dir={cache_dir}"]
    with prefect_test_harness(server_startup_timeout=120):
        md = r3v_flow(overrides=overrides, run_name="it")
        again = r3v_flow(overrides=overrides, run_name="it")  # every step finished: a no-op resume
    assert md == again and "| 1 |" in md
    return root / "it"
