"""Transformers backend: per-sample seeds make samples reproducible and independent of batching."""

import os
import subprocess
import sys

import pytest

from r3v import prompts
from r3v.embedded.bench.suite import EmbeddedBenchConfig, generate
from r3v.rollout import RolloutRequest, SamplingParams, derive_seed, sample_seeds


@pytest.fixture(scope="module")
def sampler(small_model):
    from r3v.config import RolloutConfig
    from r3v.rollout import make_sampler

    return make_sampler(RolloutConfig(batch_size=8), str(small_model), None, "float32", progress=False)


def _requests(n_q=3, n=2, iteration=1):
    rows = generate("train", n_q, EmbeddedBenchConfig())
    # the same question text -> the same prompt length -> no padding differences between layouts
    return [RolloutRequest(r["id"], r["image"]["bytes"], tuple(prompts.cot("How many objects are there?")),
                           sample_seeds(0, iteration, r["id"], n)) for r in rows]


def test_seed_derivation():
    # pinned: a stored run's samples were drawn with these seeds, so the derivation may never change
    # (and it must not depend on the process: no hash(), whose strings are salted per process)
    assert derive_seed(0, 1, "q", 0) == 865637418061508328
    assert sample_seeds(7, 2, "clevr-train-00003", 2) == (6535952690708806300, 4940491968618474323)
    other = subprocess.run([sys.executable, "-c", "from r3v.rollout import derive_seed; print(derive_seed(0, 1, 'q', 0))"],
                           env={**os.environ, "PYTHONHASHSEED": "123"}, capture_output=True, text=True, check=True)
    assert int(other.stdout) == 865637418061508328
    assert len({derive_seed(0, it, q, i) for it in (1, 2) for q in ("a", "b") for i in range(3)}) == 12
    assert sample_seeds(0, 1, "q", 3) == tuple(derive_seed(0, "rollout", 1, "q", i) for i in range(3))


def test_samples_reproduce_whatever_the_batch(sampler):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12)
    reqs = _requests()
    together = sampler.generate(reqs, params)  # 6 rows in one batch
    sampler.batch_size = 1
    try:
        alone = sampler.generate(reqs, params)  # one row per generate call
    finally:
        sampler.batch_size = 8
    assert [[c.text for c in r] for r in together] == [[c.text for c in r] for r in alone]
    texts = [c.text for r in together for c in r]
    assert len(set(texts)) > 1  # different seeds, different samples (a random model at T=1)
    other = sampler.generate(_requests(iteration=2), params)  # another iteration, other seeds
    assert [c.text for r in other for c in r] != texts
    for r in together:
        for c in r:
            assert c.completion_tokens <= 12 and c.prompt_tokens > 64


@pytest.mark.slow
def test_greedy_is_deterministic(embedded_model):
    """On the pretrained model (the small one's greedy answer is empty: nothing to compare)."""
    from r3v.config import RolloutConfig
    from r3v.rollout import make_sampler

    sampler = make_sampler(RolloutConfig(batch_size=8), str(embedded_model), None, "float32", progress=False)
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    reqs = _requests(n=1)
    first = [r[0].text for r in sampler.generate(reqs, params)]
    assert all(first) and first == [r[0].text for r in sampler.generate(reqs, params)]


def test_stop_strings_cut_the_completion(sampler):
    from r3v.rollout.transformers_backend import cut_at_stop

    assert cut_at_stop("Objects: a. Answer: 3", ["Answer:"]) == ("Objects: a. ", True)
    assert cut_at_stop("abc", ["x", ""]) == ("abc", False)
    reqs = _requests(n=1)
    # sampled (seeded per request: the same text again) — the small model's greedy answer may be empty
    full = sampler.generate(reqs, SamplingParams(temperature=1.0, max_new_tokens=24))
    text = full[0][0].text
    assert len(text.strip()) > 4, text
    word = text.strip()[len(text.strip()) // 2:][:2]  # two characters the completion writes mid-way
    cut = sampler.generate(reqs, SamplingParams(temperature=1.0, max_new_tokens=24, stop=(word,)))
    assert cut[0][0].finished and cut[0][0].text == text[:text.find(word)].strip()


def test_vllm_backend_names_the_extra_when_vllm_is_missing(small_model):
    import importlib.util

    from r3v.config import RolloutConfig
    from r3v.rollout import make_sampler

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here (tests/test_vllm.py covers the backend)")
    with pytest.raises(ImportError, match=r'pip install "r3v\[vllm\]"'):
        make_sampler(RolloutConfig(backend="vllm"), str(small_model), None, "float32")


def test_vllm_settings_only_hash_when_vllm_is_the_backend():
    from r3v.config import load_config

    base = load_config()
    assert load_config(None, ["rollout.vllm.max_num_seqs=8"]).hash() == base.hash()
    on = load_config(None, ["rollout.backend=vllm"])
    assert load_config(None, ["rollout.backend=vllm", "rollout.vllm.adapters=merged"]).hash() != on.hash()
    assert load_config(None, ["rollout.backend=vllm", "rollout.vllm.release=keep"]).hash() == on.hash()
    assert load_config(None, ["rollout.stop=['Question:']"]).hash() != base.hash()


def test_the_process_keeps_one_loaded_sampler_until_released(small_model, tmp_path):
    import shutil

    from r3v.config import RolloutConfig
    from r3v.rollout import make_sampler, release

    rc = RolloutConfig()
    a = make_sampler(rc, str(small_model), None, "float32", progress=False)
    assert make_sampler(rc, str(small_model), None, "float32", progress=False) is a  # shards reuse it
    copy = tmp_path / "model"
    shutil.copytree(small_model, copy)
    b = make_sampler(rc, str(copy), None, "float32", progress=False)  # another model: loaded anew
    assert b is not a
    for f in copy.glob("*.safetensors"):  # the same path rewritten (a recreated run): loaded anew
        f.write_bytes(f.read_bytes())
    c = make_sampler(rc, str(copy), None, "float32", progress=False)
    assert c is not b
    release(rc)  # before training: dropped
    assert make_sampler(rc, str(copy), None, "float32", progress=False) is not c
    release(rc)
