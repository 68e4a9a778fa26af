"""Integration: one full iteration of the flow (seed, sample, judge, build sets, train, evaluate)
on a tiny random model of each real family, built from a config with a local tokenizer.

Qwen2-VL and Qwen2.5-VL need torchvision: transformers 5 builds their processors with a video
processor that imports it. The main environment keeps PyPI's (CUDA) torchvision out, so those two
run in the vLLM lane (`.venv-vllm`, where .ci/vllm-env.sh makes torchvision importable on CPU):
`.venv-vllm/bin/pytest tests/test_families.py`, which .ci/run does.
"""

import importlib.util

import pytest

pytestmark = pytest.mark.slow

OVERRIDES = [
    "run.iterations=1", "data.embedded.n_seed=200", "data.embedded.n_train=32", "data.embedded.n_test=12",
    "seed.steps=400", "seed.batch_size=16", "seed.lr=3e-3", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
    "rollout.max_new_tokens=48", "eval.n=2",
]


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl", "qwen2_5_vl"])
def test_one_iteration_on_each_family(family, tmp_path, harness):
    if family.startswith("qwen") and importlib.util.find_spec("torchvision") is None:
        pytest.skip(f"{family}'s processor needs torchvision: run in the vLLM lane (.venv-vllm)")
    from flows.iterate import r3v_flow
    from r3v.embedded.model.architectures import build_tiny
    from r3v.models import language_model_linear_names, load_model, load_processor, vision_linear_names
    from r3v.store import Store

    path = build_tiny(family, tmp_path / "model")
    model, processor = load_model(path), load_processor(path)
    assert type(model).__name__.lower().replace("_", "").startswith(family.replace("_", ""))
    # LoRA targets come from the model's own structure: its decoder's Linear layers, never the
    # vision encoder, the projector or the head
    lm, vision = language_model_linear_names(model), set(vision_linear_names(model))
    assert lm and vision and not vision & set(lm) and not any("lm_head" in n for n in lm)
    assert not any(p in n for n in lm for p in ("merger", "projector", "connector"))
    del model, processor

    md = r3v_flow(overrides=OVERRIDES + [f"model.source={path}", f"run.root={tmp_path / 'runs'}"], run_name=family)
    assert "| 1 |" in md
    store = Store(tmp_path / "runs" / family)
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    assert q("SELECT count(*) AS n FROM samples WHERE iteration = 1") == [{"n": 96}]
    counts = q("SELECT count(*) FILTER (WHERE correct) AS pos, count(*) FILTER (WHERE judge_reason = 'unparsed') AS "
               "unparsed FROM samples")[0]
    assert counts["pos"] > 0, f"{family}: the seed model answered no train question right ({counts})"
    sizes = {r["kind"]: r["n"] for r in q("SELECT kind, count(*) AS n FROM sets GROUP BY kind")}
    assert sizes["sft"] > 0
    log = q("SELECT count(*) AS steps, avg(loss_sft) AS sft FROM src_train_log WHERE iteration = 1")[0]
    assert log["steps"] > 0 and log["sft"] > 0
    metrics = q("SELECT iteration, pass_at_1, oracle_at_n FROM metrics ORDER BY iteration")
    assert [m["iteration"] for m in metrics] == [0, 1]
    adapter = tmp_path / "runs" / family / "checkpoints" / "iteration=1"
    assert (adapter / "adapter_model.safetensors").exists()
    # the adapter loads back onto the seed model through the same path a real checkpoint takes
    seed = tmp_path / "runs" / family / "checkpoints" / "seed"
    assert load_model(seed, adapter=adapter) is not None


def test_build_model_cli_writes_a_family_folder(tmp_path, capsys):
    from r3v.cli import main
    from r3v.models import load_model, load_processor

    assert main(["build-model", "--family", "idefics3", "--out", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert type(load_model(tmp_path / "m")).__name__ == "Idefics3ForConditionalGeneration"
    assert load_processor(tmp_path / "m").tokenizer.eos_token == "<end_of_utterance>"
