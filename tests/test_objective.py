"""The objective's terms are declared once (r3v/objective.py); everything else reads them. And
the config hash is derived from declared rules, so adding a config field never breaks resuming."""

import dataclasses

import pytest

from r3v import objective
from r3v.config import Config, TrainConfig, affects_results, leaves, load_config
from r3v.schema import SET_SCHEMA, TRAIN_LOG_SCHEMA
from r3v.sets import SET_KINDS


def test_every_term_has_its_weight_key_columns_and_log_keys():
    keys = leaves(Config())
    for t in objective.TERMS:
        value, _ = keys[t.weight_key]
        assert isinstance(value, float), t.weight_key
        if t.enabled_key:
            assert isinstance(keys[t.enabled_key][0], bool), t.enabled_key
        assert TRAIN_LOG_SCHEMA.field(t.loss_column).type == "double"
        assert TRAIN_LOG_SCHEMA.field(t.tokens_column).type == "int64"
        assert (t.log_key, t.tokens_key) == (f"loss/{t.name}", f"tokens/{t.name}")
    # every set kind the pipeline writes feeds exactly one term
    written = set(SET_KINDS) | {"qar", "sq"}
    assert set(objective.TERM_OF_KIND) == written
    assert sum(len(t.feeds) for t in objective.TERMS) == len(written)
    assert "kind" in SET_SCHEMA.names


def test_weights_by_stage_and_switch():
    cfg = load_config(None, ["train.lambda_ref=0.5", "train.lambda_sel=0.25"])
    assert objective.weights(cfg, "train") == {"sft": 1.0, "refine": 0.5, "select": 0.25, "sq": 0.0}
    assert objective.weights(cfg, "warmup") == {"sft": 1.0, "refine": 0.0, "select": 0.0, "sq": 0.0}
    sq = load_config(None, ["sq.enabled=true", "sq.lambda_sq=0.3", "train.lambda_sft=2.0"])
    assert objective.weights(sq, "train") == {"sft": 2.0, "refine": 1.0, "select": 1.0, "sq": 0.3}
    assert objective.weights(sq, "warmup") == {"sft": 1.0, "refine": 0.0, "select": 0.0, "sq": 0.3}
    star = load_config(None, ["train.lambda_ref=0", "train.lambda_sel=0"])
    assert [k for k, w in objective.weights(star, "train").items() if w > 0] == ["sft"]
    with pytest.raises(ValueError, match="stage"):
        objective.weights(cfg, "eval")


def test_per_kind_losses_cover_every_declared_term():
    torch = pytest.importorskip("torch")
    from r3v.trainer.loss import per_kind_losses

    n = len(objective.TERMS)
    logits = torch.randn(n, 4, 7)
    labels = torch.randint(0, 7, (n, 4))
    terms = per_kind_losses(logits, labels, torch.arange(n))  # row i: the i-th term's example
    assert list(terms) == list(objective.TERM_NAMES) and all(t[1] == 3 for t in terms.values())


# -- the config hash ---------------------------------------------------------------------------------


def _with_new_train_field(default, value=None):
    """A Config whose train section has one more field than today's (as a later version would)."""
    Later = dataclasses.make_dataclass("LaterTrainConfig", [("new_knob", type(default), dataclasses.field(
        default=default))], bases=(TrainConfig,), frozen=True)
    train = Later(**{f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)},
                  new_knob=default if value is None else value)
    return dataclasses.replace(Config(), train=train)


def test_a_field_added_later_keeps_old_hashes_at_its_default():
    old = Config()
    assert _with_new_train_field(0.5).hash() == old.hash()  # an old run resumes under the new code
    assert _with_new_train_field(0.5, 0.7).hash() != old.hash()  # set off its default, it counts


def test_hash_counts_what_changes_results_and_nothing_else():
    base = Config().hash()
    for override in ("run.name=other", "run.root=/tmp/x", "run.device=cpu", "run.torch_threads=7",
                     "model.cache_dir=/tmp/c", "train.save_every=3", "train.lean_loss=false",
                     "orchestration.shard_size=5", "orchestration.task_runner=dask", "rollout.vllm.release=keep",
                     "rollout.vllm.max_num_seqs=9"):  # the engine's settings, while it does not sample
        assert load_config(None, [override]).hash() == base, override
    for override in ("run.seed=1", "train.lr=0.5", "train.lambda_ref=0", "rollout.n=4", "judge.relaxed_generic=true",
                     "data.embedded.n_train=10", "sq.enabled=true", "model.embedded.text_layers=2"):
        assert load_config(None, [override]).hash() != base, override
    vllm = load_config(None, ["rollout.backend=vllm"])
    assert load_config(None, ["rollout.backend=vllm", "rollout.vllm.max_num_seqs=9"]).hash() != vllm.hash()
    assert not affects_results("orchestration.workers") and not affects_results("rollout.vllm.enforce_eager", Config())
    assert affects_results("rollout.vllm.enforce_eager", vllm) and affects_results("train.lambda_sft")


def test_a_changed_default_changes_an_old_runs_hash():
    """An old run's config.yaml holds every value; if a default later moves, the stored value is
    then off the new default and the hashes differ: the run is refused, not silently recomputed."""
    Later = dataclasses.make_dataclass("LaterTrainConfig", [("lr", float, dataclasses.field(default=2e-3))],
                                       bases=(TrainConfig,), frozen=True)
    stored = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}  # lr 1e-3 then
    old_run = dataclasses.replace(Config(), train=Later(**stored))
    new_run = dataclasses.replace(Config(), train=Later())
    assert old_run.hash() != new_run.hash()
