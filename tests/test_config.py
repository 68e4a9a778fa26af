from pathlib import Path

import pytest

from r3v.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides():
    cfg = load_config(overrides=["train.lr=1e-4", "run.iterations=3", "rollout.top_p=0.9", "run.name=x"])
    assert cfg.train.lr == 1e-4 and cfg.run.iterations == 3 and cfg.rollout.top_p == 0.9
    assert cfg.run_dir == Path("runs") / "x"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key in train: lrate"):
        load_config(overrides=["train.lrate=1"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="run.iterations: expected an integer"):
        load_config(overrides=["run.iterations=two"])
    with pytest.raises(ConfigError, match=r"rollout.backend: 'tpu' is not one of"):
        load_config(overrides=["rollout.backend=tpu"])


def test_hash_ignores_names_and_threads_only():
    a = load_config()
    assert a.hash() == load_config(overrides=["run.name=other", "run.torch_threads=8"]).hash()
    assert a.hash() != load_config(overrides=["train.lr=0.5"]).hash()


def test_yaml_roundtrip(tmp_path):
    cfg = load_config(overrides=["train.epochs=5"])
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(p) == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert path.read_text().startswith("#"), "shipped configs start with the command that runs them"
