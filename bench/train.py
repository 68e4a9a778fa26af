"""Training throughput and memory: r3v's loop against TRL's SFTTrainer, side by side.

    .venv/bin/pip install -e ".[bench]"                 # TRL (it installs beside torch 2.13.0+cpu)
    .venv/bin/python bench/train.py                      # both models, 3 repeats -> docs/bench/train.json
    .venv/bin/python bench/train.py --models embedded --repeats 1 --steps 10

The same model, examples, LoRA (r 32, alpha 64, no dropout, on the language model's Linear
layers), micro-batch, optimizer (AdamW, lr 1e-3, grad clip 1.0, warm-up then cosine) and number
of optimizer steps go through `r3v.trainer.loop.train` and through `trl.SFTTrainer` (with our
collator: the same tokens and label masks; TRL's default loss, its fused language-model head),
in float32 with gradient checkpointing off and on for both (TRL's defaults, bf16 and
checkpointing, are set to match: bf16 matmuls are ~12x slower than float32 on this CPU).
Each run is its own process, in alternating order; it reports examples/s and tokens/s over the
steps after the first (the first pays one-time set-up), and the peak memory of training above
what the loaded model and data held (`r3v.trainer.memory.peak`: CUDA's allocator on a GPU, the RSS
high-water mark on a CPU).

Models: `embedded` (the default tiny VLM, 640-word vocabulary) and `larger` (~100M random: the
same LLaVA layout with an 8 x 768 language model and a 32,000-word vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LARGER = dict(hidden_size=768, num_hidden_layers=8, num_attention_heads=12, num_key_value_heads=12,
              intermediate_size=2048, vocab_size=32000)
SETTINGS = {"embedded": dict(batch_size=16, steps=20), "larger": dict(batch_size=4, steps=8)}


def model_path(name: str, cache_dir: str) -> Path:
    """The embedded model, or the larger random one built from its config (cached)."""
    from r3v.config import EmbeddedModelConfig
    from r3v.embedded.model.build import ensure_built

    tiny = ensure_built(EmbeddedModelConfig(), cache_dir)
    if name == "embedded":
        return tiny
    out = Path(cache_dir).expanduser() / "bench" / "larger-llava"
    if not (out / "config.json").exists():
        import torch
        from transformers import AutoConfig, LlavaForConditionalGeneration

        from r3v.models import load_processor

        cfg = AutoConfig.from_pretrained(tiny)
        for k, v in LARGER.items():
            setattr(cfg.text_config, k, v)
        torch.manual_seed(0)
        LlavaForConditionalGeneration(cfg).save_pretrained(out)
        load_processor(tiny).save_pretrained(out)
    return out


def examples(processor, n: int):
    from r3v.config import EmbeddedBenchConfig
    from r3v.embedded.bench.suite import generate
    from r3v.trainer.data import encode_all, seed_examples

    return encode_all(processor, seed_examples(generate("seed", n, EmbeddedBenchConfig()), False), 512)


def worker(trainer: str, name: str, steps: int, batch_size: int, device: str, cache_dir: str, ckpt: bool) -> dict:
    """One training run in this process; its measurements."""
    import torch

    from r3v.device import resolve
    from r3v.models import add_lora, load_model, load_processor
    from r3v.trainer.data import collate
    from r3v.trainer.memory import peak

    torch.set_num_threads(int(os.environ.get("R3V_BENCH_THREADS", "2")))
    dev = resolve(device)
    path = model_path(name, cache_dir)
    processor = load_processor(path)
    data = examples(processor, 512)
    pad = processor.tokenizer.pad_token_id
    model = add_lora(load_model(path, device=dev), r=32, alpha=64, dropout=0.0, seed=0)
    params = sum(p.numel() for p in model.parameters())
    ends: list[float] = []
    tokens: list[int] = []
    if trainer == "r3v":
        from r3v.trainer.loop import LoopSpec, micro_batches, train

        spec = LoopSpec(lr=1e-3, batch_size=batch_size, max_steps=steps, warmup_steps=2, seed=0,
                        gradient_checkpointing=ckpt)
        order = micro_batches(data, batch_size, False, 0)
        tokens = [sum(len(e.input_ids) for e in next(order)) for _ in range(steps)]
        with peak(dev) as mem:
            train(model, data, spec, {"sft": 1.0, "refine": 1.0, "select": 1.0, "sq": 1.0}, pad,
                  on_step=lambda rec: ends.append(time.perf_counter()), progress=False)
    else:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer

        def collator(rows):
            batch = collate([data[r["idx"]] for r in rows], pad)
            batch.pop("kinds")
            tokens.append(int(batch["attention_mask"].sum()))
            return batch

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                ends.append(time.perf_counter())

        args = SFTConfig(output_dir=str(Path(cache_dir).expanduser() / "bench" / "trl-out"), max_steps=steps,
                         per_device_train_batch_size=batch_size, learning_rate=1e-3, warmup_steps=2,
                         lr_scheduler_type="cosine", max_grad_norm=1.0, weight_decay=0.0, logging_steps=10**6,
                         save_strategy="no", report_to=[], remove_unused_columns=False, max_length=None,
                         dataset_kwargs={"skip_prepare_dataset": True}, dataloader_pin_memory=False,
                         use_cpu=dev.type == "cpu", seed=0, disable_tqdm=True, bf16=False, fp16=False,
                         gradient_checkpointing=ckpt,
                         gradient_checkpointing_kwargs={"use_reentrant": False} if ckpt else None)
        t = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"idx": list(range(len(data)))}),
                       data_collator=collator, processing_class=processor.tokenizer, callbacks=[Clock()])
        with peak(dev) as mem:
            t.train()
    timed = ends[-1] - ends[0]  # steps 2..N
    return {"trainer": trainer, "model": name, "parameters": params, "steps": len(ends), "batch_size": batch_size,
            "examples_per_s": (len(ends) - 1) * batch_size / timed,
            "tokens_per_s": sum(tokens[1:len(ends)]) / timed, "peak_mb": mem["bytes"] / 2**20,
            "memory": mem["what"], "device": str(dev), "gradient_checkpointing": ckpt}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["embedded", "larger"], choices=sorted(SETTINGS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=0, help="optimizer steps per run (0: the model's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default="~/.cache/r3v")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench" / "train.json"))
    p.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"],
                   help="gradient checkpointing, the same for both trainers")
    p.add_argument("--worker", nargs=3, metavar=("TRAINER", "MODEL", "CKPT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        trainer, name, ckpt = a.worker
        s = SETTINGS[name]
        print("RESULT " + json.dumps(worker(trainer, name, a.steps or s["steps"], s["batch_size"], a.device,
                                            a.cache_dir, ckpt == "on")))
        return
    results = []
    for name, ckpt in ((n, c) for n in a.models for c in a.checkpointing):
        model_path(name, a.cache_dir)  # built once, before the timed runs
        runs = {"r3v": [], "trl": []}
        for r in range(a.repeats):
            for trainer in (("r3v", "trl") if r % 2 == 0 else ("trl", "r3v")):
                out = subprocess.run([sys.executable, __file__, "--worker", trainer, name, ckpt, "--steps", str(a.steps),
                                      "--device", a.device, "--cache-dir", a.cache_dir],
                                     capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
                line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
                if out.returncode or line is None:
                    raise SystemExit(f"{trainer} on {name} failed:\n{out.stderr[-3000:]}")
                runs[trainer].append(json.loads(line[7:]))
                print(f"{name} ckpt={ckpt} {trainer} run {r + 1}: {runs[trainer][-1]}", flush=True)
        med = {t: {k: statistics.median(x[k] for x in rs) for k in ("examples_per_s", "tokens_per_s", "peak_mb")}
               for t, rs in runs.items()}
        results.append({"model": name, "gradient_checkpointing": ckpt, "parameters": runs["r3v"][0]["parameters"], "device": runs["r3v"][0]["device"],
                        "memory": runs["r3v"][0]["memory"], "batch_size": runs["r3v"][0]["batch_size"],
                        "steps": runs["r3v"][0]["steps"], "repeats": a.repeats, "median": med,
                        "r3v_over_trl": {k: round(med["r3v"][k] / med["trl"][k], 3) for k in med["r3v"]},
                        "runs": runs})
    Path(a.out).write_text(json.dumps(results, indent=2))
    print("\n| model | params | grad. ckpt | trainer | examples/s | tokens/s | peak MB |\n|---|---|---|---|---|---|---|")
    for res in results:
        for t in ("r3v", "trl"):
            m = res["median"][t]
            print(f"| {res['model']} | {res['parameters'] / 1e6:.1f}M | {res['gradient_checkpointing']} | {t} | "
                  f"{m['examples_per_s']:.2f} | {m['tokens_per_s']:.0f} | {m['peak_mb']:.0f} |")
        r = res["r3v_over_trl"]
        print(f"| {res['model']} | | {res['gradient_checkpointing']} | r3v / trl | {r['examples_per_s']:.3f} | "
              f"{r['tokens_per_s']:.3f} | {r['peak_mb']:.3f} |")
    print(f"\nwritten to {a.out}")


if __name__ == "__main__":
    main()
