"""Every real architecture (tiny random models of LLaVA, Idefics3, Qwen2-VL, Qwen2.5-VL, built from
configs with a local tokenizer) goes through the code a real checkpoint of it would.

Plumbing, for every architecture (seconds each): loading through the auto classes, the LoRA
targets found from the model's own structure, the chat template's rendering and label spans, and
the adapter round trip (a trained adapter saved, loaded back and merged gives the same logits).
The full flow (seed, sample, judge, sets, train, evaluate) runs once per CI lane, on one
architecture each: idefics3 in the main lane, qwen2_5_vl in the vLLM lane. (The embedded model,
which every other integration test runs, is the LLaVA layout.)

Qwen2-VL and Qwen2.5-VL need torchvision: transformers 5 builds their processors with a video
processor that imports it. The main environment keeps PyPI's (CUDA) torchvision out, so those two
run in the vLLM lane (`.venv-vllm`, where .ci/vllm-env.sh makes torchvision importable on CPU).
"""

import importlib.util

import pytest
import torch

from r3v import prompts
from r3v.embedded.bench.suite import EmbeddedBenchConfig, generate
from r3v.embedded.model.architectures import ARCHITECTURES, build_tiny

FULL_FLOW = ("idefics3", "qwen2_5_vl")  # one per lane (which lane runs which: torchvision)
OVERRIDES = [
    "run.iterations=1", "data.embedded.n_seed=200", "data.embedded.n_train=32", "data.embedded.n_test=12",
    "warmup.steps=400", "warmup.batch_size=16", "warmup.lr=3e-3", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
    "rollout.max_new_tokens=48", "eval.n=2",
]
Q = generate("seed", 1, EmbeddedBenchConfig())[0]


def _needs_torchvision(architecture):
    if architecture.startswith("qwen") and importlib.util.find_spec("torchvision") is None:
        pytest.skip(f"{architecture}'s processor needs torchvision: run in the vLLM lane (.venv-vllm)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """architecture -> its tiny random model folder (built on first use)."""
    built = {}

    def get(architecture):
        if architecture not in built:
            built[architecture] = build_tiny(architecture, tmp_path_factory.mktemp(architecture) / "model")
        return built[architecture]
    return get


def _logits(model, processor, enc):
    """Logits of one encoded example, batched as training batches it (per-token processor outputs
    such as Qwen-VL's mm_token_type_ids get their batch dimension there)."""
    from r3v.trainer.data import collate

    batch = collate([enc], processor.tokenizer.pad_token_id)
    batch.pop("labels"), batch.pop("kinds")
    with torch.no_grad():
        return model(**batch).logits[0]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_plumbing_of_each_architecture(architecture, tiny, tmp_path):
    _needs_torchvision(architecture)
    from r3v.models import (
        add_lora,
        language_model_linear_names,
        load_model,
        load_processor,
        vision_linear_names,
    )
    from r3v.trainer.data import IGNORE, Example, encode

    path = tiny(architecture)
    model, processor = load_model(path), load_processor(path)
    assert type(model).__name__.lower().replace("_", "").startswith(architecture.replace("_", ""))
    # LoRA targets come from the model's own structure: its decoder's Linear layers, never the
    # vision encoder, the projector or the head
    lm, vision = language_model_linear_names(model), set(vision_linear_names(model))
    assert lm and vision and not vision & set(lm) and not any("lm_head" in n for n in lm)
    assert not any(p in n for n in lm for p in ("merger", "projector", "connector"))
    # the architecture's own chat template: the image's tokens are in the prompt, and only the
    # target and its end of turn are labelled
    ex = Example("sft", Q["image"]["bytes"], tuple(prompts.cot(Q["question"])), Q["rationale"])
    enc = encode(processor, ex, max_length=2048)
    labelled = enc.labels[enc.labels != IGNORE]
    assert processor.tokenizer.decode(labelled).lstrip().startswith(Q["rationale"])  # Idefics3: "Assistant: …"
    assert processor.tokenizer.decode(labelled).endswith(processor.tokenizer.eos_token)
    first = int((enc.labels != IGNORE).nonzero()[0])
    image_token = processor.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<image>"))
    assert (enc.input_ids[:first] == image_token).sum() > 0 and (enc.input_ids[first:] == image_token).sum() == 0
    # adapter round trip: a LoRA with non-zero weights, saved, loaded back onto the base model and
    # merged, gives the in-memory adapter's logits, and they differ from the base model's
    base_logits = _logits(model, processor, enc)
    peft_model = add_lora(model, r=4, alpha=8, dropout=0.0, seed=1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    peft_model.eval()
    adapted = _logits(peft_model, processor, enc)
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = _logits(load_model(path, adapter=tmp_path / "adapter"), processor, enc)
    assert (adapted - base_logits).abs().max() > 1e-3
    torch.testing.assert_close(reloaded, adapted, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", FULL_FLOW)
def test_one_iteration_of_the_flow(architecture, tiny, tmp_path, harness):
    _needs_torchvision(architecture)
    if architecture == "idefics3" and importlib.util.find_spec("torchvision") is not None:
        pytest.skip("idefics3's full flow runs in the main lane; this lane runs qwen2_5_vl's")
    from flows.iterate import r3v_flow
    from r3v.store import Store

    md = r3v_flow(overrides=OVERRIDES + [f"model.source={tiny(architecture)}", f"run.root={tmp_path / 'runs'}"],
                  run_name=architecture)
    assert "| 1 |" in md
    store = Store(tmp_path / "runs" / architecture)
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    assert q("SELECT count(*) AS n FROM samples WHERE iteration = 1") == [{"n": 96}]
    counts = q("SELECT count(*) FILTER (WHERE correct) AS pos, count(*) FILTER (WHERE judge_reason = 'unparsed') AS "
               "unparsed FROM samples")[0]
    assert counts["pos"] > 0, f"{architecture}: the seed model answered no train question right ({counts})"
    sizes = {r["kind"]: r["n"] for r in q("SELECT kind, count(*) AS n FROM sets GROUP BY kind")}
    assert sizes["sft"] > 0
    log = q("SELECT count(*) AS steps, avg(loss_sft) AS sft FROM src_train_log WHERE iteration = 1")[0]
    assert log["steps"] > 0 and log["sft"] > 0
    metrics = q("SELECT iteration, pass_at_1, oracle_at_n FROM metrics ORDER BY iteration")
    assert [m["iteration"] for m in metrics] == [0, 1]
    adapter = tmp_path / "runs" / architecture / "checkpoints" / "iteration=1"
    manifest = (adapter / "manifest.json").read_text()
    assert (adapter / "adapter_model.safetensors").exists() and '"adapter_hash"' in manifest


def test_build_model_cli_writes_an_architecture_folder(tmp_path, capsys):
    from r3v.cli import main
    from r3v.models import load_model, load_processor

    assert main(["build-model", "--architecture", "idefics3", "--out", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert type(load_model(tmp_path / "m")).__name__ == "Idefics3ForConditionalGeneration"
    assert load_processor(tmp_path / "m").tokenizer.eos_token == "<end_of_utterance>"
