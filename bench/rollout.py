"""Rollout throughput: the same requests through (a) raw `vllm.LLM.generate`, (b) r3v's vLLM
backend, (c) r3v's transformers backend, in one run; prints tokens/s and the ratios b/a, b/c.

    .venv-vllm/bin/python bench/rollout.py                      # tiny and larger model, CPU
    .venv-vllm/bin/python bench/rollout.py --models tiny --questions 256 --samples 3 --tokens 128
    .venv-vllm/bin/python bench/rollout.py --adapter --models tiny   # an adapter: LoRA vs merged

Models: `tiny` (the embedded default, ~6M parameters) and `larger` (the same LLaVA layout with
a 12-layer, 768-wide language model, ~86M parameters), both built here from configs with random
language models, so every completion runs to about `--tokens` tokens and all three paths do
the same work. Requests are CoT prompts on embedded questions with per-sample seeds, sampled at
T=1 as in a rollout. (a) and (b) share one engine (engine load time is reported, not counted);
the engine is shut down before (c) so that it competes for no core. (a) sends each question as one
request with n samples; (b) sends what r3v sends (one request per derived seed, with the image
decoded and the prompt rendered inside the timed call). Tokens/s counts generated tokens.
Needs the vLLM environment (`bash .ci/vllm-env.sh`); VLLM_CPU_KVCACHE_SPACE defaults to 4 GiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {
    "tiny": {},
    "larger": dict(text_hidden=768, text_layers=12, text_heads=12, text_intermediate=2048,
                   vision_pretrain_steps=0),
}


def build_model(name: str, cache_dir: str) -> tuple[str, int]:
    from r3v.config import EmbeddedModelConfig
    from r3v.embedded.model.build import ensure_built

    path = ensure_built(dataclasses.replace(EmbeddedModelConfig(), **MODELS[name]), cache_dir)
    meta = json.loads((path / "r3v_embedded.json").read_text())
    return str(path), meta["parameters"]


def make_requests(n_questions: int, n_samples: int):
    from r3v import prompts
    from r3v.embedded.bench.suite import EmbeddedBenchConfig, generate
    from r3v.rollout import RolloutRequest, sample_seeds

    rows = generate("test", n_questions, EmbeddedBenchConfig(n_test=n_questions))
    return [RolloutRequest(r["id"], r["image"]["bytes"], tuple(prompts.cot(r["question"], r["choices"])),
                           sample_seeds(0, 1, r["id"], n_samples)) for r in rows]


def raw_inputs(requests, processor, params):
    """What a user of raw vLLM would send: rendered prompts + images, one request with n per question."""
    import vllm
    from PIL import Image

    prompts = [{"prompt": processor.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False),
                "multi_modal_data": {"image": Image.open(io.BytesIO(r.image)).convert("RGB")}} for r in requests]
    sps = [vllm.SamplingParams(n=len(r.seeds), temperature=params.temperature, top_p=params.top_p,
                               max_tokens=params.max_new_tokens, seed=r.seeds[0]) for r in requests]
    return prompts, sps


def make_adapter(path: str, rank: int, out: Path) -> str:
    """A LoRA adapter on every language-model Linear, with random non-zero B (as a trained one)."""
    import torch

    from r3v.models import add_lora, load_model

    model = add_lora(load_model(path), r=rank, alpha=2 * rank, dropout=0.0, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    model.save_pretrained(out)
    return str(out)


def bench_adapter(name: str, args) -> dict:
    """r3v's vLLM backend with one adapter: served as LoRA vs merged into the weights."""
    import tempfile

    from r3v.config import RolloutConfig, VLLMConfig
    from r3v.rollout import SamplingParams, make_sampler
    from r3v.rollout import vllm_backend as vb

    path, n_params = build_model(name, args.cache_dir)
    requests = make_requests(args.questions, args.samples)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=args.tokens)
    tps = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(path, args.adapter_rank, Path(tmp) / "iteration=1")
        for mode in ("lora", "merged"):
            vc = VLLMConfig(adapters=mode, max_model_len=768, max_num_batched_tokens=args.max_num_batched_tokens,
                            max_num_seqs=args.max_num_seqs)
            s = make_sampler(RolloutConfig(backend="vllm", vllm=vc), path, adapter, "float32",
                             max_lora_rank=args.adapter_rank, progress=False)
            s.generate(requests[:8], params)  # engine build, adapter load and warm-up out of the timing
            outs, dt = timed(lambda s=s: s.generate(requests, params))
            tps[mode] = sum(len(c.token_ids) + c.finished for r in outs for c in r) / dt
            vb.shutdown()
    return {"model": name, "parameters": n_params, "adapter_rank": args.adapter_rank,
            "requests": f"{args.questions} questions x {args.samples} samples x <= {args.tokens} tokens",
            "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
            "merged_over_lora": round(tps["merged"] / tps["lora"], 2)}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_model(name: str, args) -> dict:
    from r3v.config import RolloutConfig, VLLMConfig
    from r3v.models import set_threads
    from r3v.rollout import SamplingParams, make_sampler
    from r3v.rollout import vllm_backend as vb

    path, n_params = build_model(name, args.cache_dir)
    requests = make_requests(args.questions, args.samples)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=args.tokens)
    vc = VLLMConfig(max_model_len=768, max_num_batched_tokens=args.max_num_batched_tokens,
                    max_num_seqs=args.max_num_seqs)
    rc = RolloutConfig(backend="vllm", vllm=vc, batch_size=args.batch_size)
    ours = make_sampler(rc, path, None, "float32", progress=False)
    _, load_s = timed(lambda: ours.llm)
    prompts, sps = raw_inputs(requests, ours.processor, params)
    llm = ours.llm
    warm = min(8, len(requests))
    llm.generate(prompts[:warm], sps[:warm], use_tqdm=False)  # warm-up: first-call costs out of the timing
    ours.generate(requests[:warm], params)
    runs = {"a_raw_vllm": [], "b_r3v_vllm": []}
    for _ in range(args.repeats):  # alternate a and b so drift on the machine hits both alike
        outs, dt = timed(lambda: llm.generate(prompts, sps, use_tqdm=False))
        runs["a_raw_vllm"].append(sum(len(c.token_ids) for o in outs for c in o.outputs) / dt)
        outs, dt = timed(lambda: ours.generate(requests, params))
        runs["b_r3v_vllm"].append(sum(len(c.token_ids) + c.finished for r in outs for c in r) / dt)
    vb.shutdown()
    set_threads(args.threads)
    tf = make_sampler(RolloutConfig(batch_size=args.batch_size), path, None, "float32", progress=False)
    tf.generate(requests[:warm], SamplingParams(1.0, 1.0, 8))
    outs, dt = timed(lambda: tf.generate(requests, params))
    # token counts include the end-of-turn token where a completion ended, as vLLM's do
    runs["c_r3v_transformers"] = [sum(len(c.token_ids) + c.finished for r in outs for c in r) / dt]
    tps = {k: statistics.median(v) for k, v in runs.items()}
    return {"model": name, "parameters": n_params, "engine_load_s": round(load_s, 1),
            "requests": f"{args.questions} questions x {args.samples} samples x <= {args.tokens} tokens",
            "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
            "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
            "b_over_a": round(tps["b_r3v_vllm"] / tps["a_raw_vllm"], 3),
            "b_over_c": round(tps["b_r3v_vllm"] / tps["c_r3v_transformers"], 2)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny", "larger"], choices=sorted(MODELS))
    p.add_argument("--questions", type=int, default=256)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=96, help="transformers backend rows per generate call")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=65536)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the transformers backend")
    p.add_argument("--cache-dir", default="~/.cache/r3v")
    p.add_argument("--adapter", action="store_true",
                   help="instead: r3v's vLLM backend with an adapter, served as LoRA vs merged")
    p.add_argument("--adapter-rank", type=int, default=32)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    if args.adapter:
        results = [bench_adapter(m, args) for m in args.models]
        header = f"{'LoRA':>9} {'merged':>9} {'merged/LoRA':>12}  (tokens/s, rank {args.adapter_rank})"
        cells = lambda r, t: f"{t['lora']:9.1f} {t['merged']:9.1f} {r['merged_over_lora']:12.2f}"  # noqa: E731
    else:
        results = [bench_model(m, args) for m in args.models]
        header = f"{'raw vLLM':>10} {'r3v vLLM':>10} {'r3v HF':>9} {'b/a':>6} {'b/c':>6}  (tokens/s)"
        cells = lambda r, t: (f"{t['a_raw_vllm']:10.1f} {t['b_r3v_vllm']:10.1f} "  # noqa: E731
                              f"{t['c_r3v_transformers']:9.1f} {r['b_over_a']:6.3f} {r['b_over_c']:6.2f}")
    print(f"\n{'model':8} {'params':>8} {header}")
    for r in results:
        print(f"{r['model']:8} {r['parameters'] / 1e6:7.1f}M {cells(r, r['tokens_per_s'])}")
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))

if __name__ == "__main__":
    main()
