"""The GPU check: r3v on an accelerator, end to end, then at real-model scale.

    python bench/gpu_check.py                        # run.device=auto: the first GPU torch sees
    python bench/gpu_check.py --device cpu --small   # the same code on this CPU, small (tests/test_gpu_check.py)

1. One full iteration of the loop on the embedded model with `run.device` (warm-up, rollout,
   judge, sets, training, evaluation): the Prefect flow where Prefect is installed, else the same
   library steps in the flow's order; it prints every step's wall time and the device it used.
2. The warm-up (full fine-tuning of the language model and projector, vision tower frozen) and
   then LoRA training steps on a random ~0.5B model of Qwen2-VL's architecture (a Qwen2-0.5B
   language model, 151,936-word vocabulary, a smaller vision tower), in bf16 with gradient
   checkpointing and the lean loss, on synthetic image+text examples: tokens/s and peak memory.

Prints one JSON document (also written to --out). Needs torch, transformers, peft, pyarrow,
duckdb (and prefect for the flow); no network.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMALL = ["data.embedded.n_seed=200", "data.embedded.n_train=16", "data.embedded.n_test=4", "warmup.steps=80",
         "warmup.batch_size=16", "train.max_steps=3", "train.batch_size=8", "train.grad_accum=1",
         "rollout.max_new_tokens=64", "eval.n=1"]
QWEN = {  # ~0.5B: Qwen2-0.5B's language model, a 12-layer 768-wide vision tower
    "text": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936),
    "vision": dict(depth=12, embed_dim=768, num_heads=12, mlp_ratio=4),
    "image": 448, "length": 2048, "batch": 4, "steps": 6,
}
QWEN_SMALL = {"text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=4096),
              "vision": dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2), "image": 56, "length": 128,
              "batch": 2, "steps": 2}


def flow_iteration(device: str, small: bool, root: Path, cache: str, model: str = "") -> dict:
    from r3v.config import load_config
    from r3v.run import init_run
    from r3v.store import Store

    overrides = ["run.iterations=1", f"run.device={device}", f"run.root={root}", "run.name=gpu-check",
                 f"model.cache_dir={cache}"] + (SMALL if small else [])
    if model:  # start from this model (e.g. a warmed-up M_0): no warm-up
        overrides += [f"model.source={model}", "warmup.enabled=false"]
    t0 = time.perf_counter()
    try:
        from prefect.testing.utilities import prefect_test_harness

        from flows.iterate import r3v_flow

        with prefect_test_harness(server_startup_timeout=120):
            r3v_flow(config=str(ROOT / "configs" / "embedded.yaml"), overrides=overrides)
        how = "prefect flow r3v"
    except ImportError:  # no Prefect on this machine: the flow's steps, in its order
        from r3v import steps

        run_dir = str(init_run(load_config(ROOT / "configs" / "embedded.yaml", overrides)))
        steps.prepare(run_dir)
        steps.warmup(run_dir)
        steps.evaluate(run_dir, 0)
        for step in (steps.rollout, steps.judge, steps.build_sets, steps.train, steps.evaluate):
            step(run_dir, 1)
        how = "r3v.steps in the flow's order (prefect not installed)"
    rows = Store(root / "gpu-check").read("steps").to_pylist()
    table = []
    for r in sorted(rows, key=lambda r: r["finished_at"]):
        info = json.loads(r["info"])
        table.append({"iteration": r["iteration"], "step": r["step"], "seconds": r["seconds"],
                      "device": info.get("device", "-")})
    metrics = Store(root / "gpu-check").query("SELECT * FROM metrics").to_pylist()
    return {"how": how, "wall_s": round(time.perf_counter() - t0, 1), "steps": table,
            "pass@1": {m["iteration"]: m["pass_at_1"] for m in metrics}}


def qwen_model(spec: dict, device, dtype):
    import torch
    import transformers as tf

    head_dim = spec["text"]["hidden_size"] // spec["text"]["num_attention_heads"]
    text = dict(spec["text"], max_position_embeddings=32768, rope_parameters={
        "rope_type": "default", "rope_theta": 1e6, "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]})
    vision = dict(spec["vision"], hidden_size=spec["text"]["hidden_size"], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    v = spec["text"]["vocab_size"]
    cfg = tf.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=v - 3, video_token_id=v - 4,
                           vision_start_token_id=v - 2, vision_end_token_id=v - 1, tie_word_embeddings=True)
    torch.manual_seed(0)
    return tf.Qwen2VLForConditionalGeneration(cfg).to(device=device, dtype=dtype), cfg


def qwen_examples(spec: dict, cfg, n: int):
    """Synthetic examples in Qwen2-VL's layout: <vision_start> image pads <vision_end> text; the
    second half of each sequence is the labelled target."""
    import torch

    from r3v.trainer.data import Encoded

    g = torch.Generator().manual_seed(0)
    side = spec["image"] // 14  # patches per side
    image_tokens = side * side // 4  # merged 2x2
    out = []
    for _ in range(n):
        text = torch.randint(0, cfg.text_config.vocab_size - 8, (spec["length"] - image_tokens - 2,), generator=g)
        ids = torch.cat([torch.tensor([cfg.vision_start_token_id]), torch.full((image_tokens,), cfg.image_token_id),
                         torch.tensor([cfg.vision_end_token_id]), text])
        labels = ids.clone()
        labels[: len(ids) // 2] = -100
        mm = (ids == cfg.image_token_id).long()
        vision = {"pixel_values": torch.randn(side * side, 3 * 2 * 14 * 14, generator=g),
                  "image_grid_thw": torch.tensor([[1, side, side]]), "mm_token_type_ids": mm}
        out.append(Encoded(0, ids, labels, vision))
    return out


def qwen_training(device_spec: str, small: bool) -> dict:
    import torch

    from r3v.device import resolve
    from r3v.models import add_lora, freeze_vision_tower
    from r3v.trainer.loop import LoopSpec, train
    from r3v.trainer.memory import peak

    spec = QWEN_SMALL if small else QWEN
    device = resolve(device_spec)
    dtype = torch.bfloat16
    model, cfg = qwen_model(spec, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    data = qwen_examples(spec, cfg, spec["batch"] * spec["steps"])
    tokens = sum(len(e.input_ids) for e in data)
    weights = {"sft": 1.0, "refine": 1.0, "select": 1.0, "sq": 1.0}
    out = {"parameters": params, "device": str(device), "dtype": "bfloat16", "precision": "bf16",
           "gradient_checkpointing": True, "lean_loss": True, "batch": spec["batch"], "length": spec["length"]}
    for stage in ("warm-up (full fine-tuning, vision frozen)", "LoRA r=128 on the language model"):
        if stage.startswith("LoRA"):
            for p in model.parameters():
                p.requires_grad_(False)
            model = add_lora(model, r=128, alpha=256, dropout=0.05, seed=0)
        else:
            freeze_vision_tower(model)
        ls = LoopSpec(lr=1e-5 if stage.startswith("warm-up") else 1e-4, batch_size=spec["batch"], max_steps=spec["steps"],
                      warmup_steps=1, precision="bf16", gradient_checkpointing=True, lean_loss=True, seed=0)
        t0 = time.perf_counter()
        with peak(device) as mem:
            logs = train(model, data, ls, weights, pad_id=0, progress=False)
        dt = time.perf_counter() - t0
        out[stage] = {"steps": len(logs), "seconds": round(dt, 2), "tokens_per_s": round(tokens / dt, 1),
                      "peak_memory_mb": round(mem["bytes"] / 2**20, 1), "memory": mem["what"],
                      "loss_first_last": [round(logs[0]["loss/total"], 3), round(logs[-1]["loss/total"], 3)]}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--small", action="store_true", help="tiny sizes (the CPU test)")
    p.add_argument("--cache-dir", default="~/.cache/r3v")
    p.add_argument("--model", default="", help="start the flow from this model folder, without a warm-up")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    import torch

    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with tempfile.TemporaryDirectory() as root:
        info["flow_iteration"] = flow_iteration(a.device, a.small, Path(root), a.cache_dir, a.model)
    info["qwen2_vl"] = qwen_training(a.device, a.small)
    text = json.dumps(info, indent=2, default=str)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return info


if __name__ == "__main__":
    main()
