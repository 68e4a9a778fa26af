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


@pytest.mark.parametrize("name,family", [("qwen2-vl-2b-vllm.yaml", "qwen"), ("qwen2.5-vl-3b-vllm.yaml", "qwen"),
                                         ("llava-1.5-7b-vllm.yaml", "llava")])
def test_real_model_configs_carry_the_papers_hyper_parameters(name, family):
    """R3V's settings: 3 samples at T=0.9, top-p 0.95; LoRA r=64 a=16 (Qwen) or r=128 a=256
    (LLaVA); lr 3e-5; 3 epochs per iteration; global batch 64; max length 2048; the benchmark read
    in its own format."""
    cfg = load_config(ROOT / "configs" / name)
    ro, tr = cfg.rollout, cfg.train
    assert (ro.n, ro.temperature, ro.top_p) == (3, 0.9, 0.95)
    assert (tr.lora_r, tr.lora_alpha) == ((64, 16) if family == "qwen" else (128, 256))
    assert (tr.lr, tr.epochs, tr.batch_size * tr.grad_accum, tr.max_length) == (3e-5, 3, 64, 2048)
    assert cfg.data.source == "files" and {s.format for s in (cfg.data.seed_split, cfg.data.train_split,
                                                              cfg.data.test_split)} == {"tabmwp"}
    assert cfg.model.dtype == "bfloat16" and cfg.rollout.backend == "vllm"


def test_every_key_is_documented_where_it_is_declared():
    from r3v.config import key_docs

    docs = key_docs()
    leaves = {k: d for k, d in docs.items() if not d["section"]}
    assert len(leaves) > 100
    assert not [k for k, d in leaves.items() if len(d["doc"]) < 12], "config keys without a docstring"
    assert "Eq. 5" in docs["train.lambda_ref"]["doc"] and docs["train.lambda_ref"]["default"] == 1.0


def test_config_explain_cli(capsys):
    from r3v.cli import main

    assert main(["config", "explain", "train.lambda_sel"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("train.lambda_sel: float = 1.0") and "L_SEL" in out
    assert main(["config", "explain", "orchestration"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[orchestration]") and "orchestration.shard_size: int = 200  (not in the config hash" in out
    assert main(["config", "explain", "train.lamda_sel"]) == 2
    assert "did you mean train.lambda_sel" in capsys.readouterr().err


def test_renamed_keys_are_read_with_a_deprecation_warning(tmp_path, caplog):
    """Issue 34: the warm-up's section was `seed` (with `sq.seed_stage`, `eval.evaluate_seed`): a config
    file, an override or a run folder that still says so is read as the new names, with one warning
    line per key, and hashes as before (a renamed key hashes under its first name)."""
    from r3v.config import RENAMED

    old = tmp_path / "old.yaml"
    old.write_text("seed:\n  steps: 7\n  lr: 0.002\nsq:\n  seed_stage: false\neval:\n  evaluate_seed: false\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(old, ["seed.batch_size=4"])
    assert (cfg.warmup.steps, cfg.warmup.lr, cfg.warmup.batch_size, cfg.sq.warmup, cfg.eval.evaluate_m0) == \
        (7, 0.002, 4, False, False)
    new = load_config(None, ["warmup.steps=7", "warmup.lr=0.002", "warmup.batch_size=4", "sq.warmup=false",
                             "eval.evaluate_m0=false"])
    assert cfg == new and cfg.hash() == new.hash()
    warned = [r.getMessage() for r in caplog.records]
    for k, v in RENAMED.items():  # one line per key and file
        assert sum(m.startswith(f"{old}: config key {k!r} is now called {v!r}") for m in warned) == 1, warned
    assert load_config(None, ["seed.lr=0.002", "warmup.steps=9"]).warmup.steps == 9  # both names, other keys
    with pytest.raises(ConfigError, match="'seed' and its new name 'warmup' are both set \\(both set lr\\)"):
        load_config(None, ["seed.lr=0.002", "warmup.lr=0.003"])
    with pytest.raises(ConfigError, match="'sq.seed_stage' and its new name 'sq.warmup' are both set; keep"):
        load_config(None, ["sq.seed_stage=false", "sq.warmup=true"])
