"""Shared fixtures: the embedded model built once per session into a temporary cache."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("r3v-cache")


@pytest.fixture(scope="session")
def embedded_model(cache_dir):
    """Path of the default embedded tiny VLM, built into the session's cache."""
    import torch

    from r3v.config import load_config
    from r3v.embedded.model import ensure_built

    torch.set_num_threads(int(os.environ.get("R3V_TEST_THREADS", "2")))
    cfg = load_config()
    return ensure_built(cfg.model.embedded, cache_dir)


@pytest.fixture(scope="session")
def processor(embedded_model):
    from r3v.models import load_processor

    return load_processor(embedded_model)
