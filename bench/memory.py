"""Loss memory at a real vocabulary: one training step with full [B, L, V] logits against r3v's
lean loss (the head at labelled positions only, in chunks), on a random model of Qwen2-VL's
architecture with Qwen2's 151,936-word vocabulary and 2048-token examples.

    .venv/bin/python bench/memory.py                  # -> docs/bench/loss-memory.json
    .venv/bin/python bench/memory.py --batch 1 --labelled 0.5

Each variant runs in its own process (`r3v.trainer.memory.peak`: CUDA's allocator on a GPU, the RSS
high-water mark on a CPU): `full` and `lean` run one forward + backward of the objective, `body`
the same model without the head and loss (its hidden states' mean square as the loss). Loss
memory = the step's peak minus the body's. The body is small (2 layers x 256), so the head and
the loss are most of a step here; in a 2-7B model the body's activations add the same to both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(variant: str, batch: int, length: int, labelled: float, vocab: int, device: str) -> dict:
    import torch
    import transformers as tf

    from r3v.device import resolve
    from r3v.trainer.loss import Objective
    from r3v.trainer.memory import peak

    dev = resolve(device)
    torch.set_num_threads(2)
    text = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]})
    cfg = tf.Qwen2VLConfig(text_config=text, vision_config=dict(depth=1, embed_dim=32, num_heads=2, hidden_size=256),
                           image_token_id=vocab - 3, video_token_id=vocab - 4, vision_start_token_id=vocab - 2,
                           vision_end_token_id=vocab - 1)
    torch.manual_seed(0)
    model = tf.Qwen2VLForConditionalGeneration(cfg).to(dev).train()
    ids = torch.randint(0, vocab - 8, (batch, length), device=dev)
    labels = ids.clone()
    labels[:, : int(length * (1 - labelled))] = -100
    kinds = torch.zeros(batch, dtype=torch.long, device=dev)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    obj = Objective(model, {"sft": 1.0, "refine": 1.0, "select": 1.0, "sq": 1.0}, lean=variant == "lean")
    with peak(dev) as mem:
        if variant == "body":
            model.model(**inputs, use_cache=False).last_hidden_state.float().pow(2).mean().backward()
        else:
            obj(inputs, labels, kinds)[0].backward()
    return {"variant": variant, "peak_mb": mem["bytes"] / 2**20, "memory": mem["what"], "device": str(dev),
            "chunk_tokens": obj.chunk_tokens}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--labelled", type=float, default=1.0, help="share of each example's tokens that are targets")
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench" / "loss-memory.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.batch, a.length, a.labelled, a.vocab, a.device)))
        return
    res = {}
    for variant in ("body", "full", "lean"):
        out = subprocess.run([sys.executable, __file__, "--worker", variant, "--batch", str(a.batch), "--length",
                              str(a.length), "--labelled", str(a.labelled), "--vocab", str(a.vocab), "--device",
                              a.device], capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if out.returncode or line is None:
            raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
        res[variant] = json.loads(line[7:])
        print(res[variant], flush=True)
    loss = {v: res[v]["peak_mb"] - res["body"]["peak_mb"] for v in ("full", "lean")}
    logits_mb = a.batch * a.length * a.vocab * 4 / 2**20
    summary = {"batch": a.batch, "length": a.length, "labelled": a.labelled, "vocab": a.vocab,
               "device": res["lean"]["device"], "memory": res["lean"]["memory"],
               "float32_logits_mb": round(logits_mb, 1), "lean_chunk_tokens": res["lean"]["chunk_tokens"],
               "step_peak_mb": {v: round(r["peak_mb"], 1) for v, r in res.items()},
               "loss_memory_mb": {v: round(m, 1) for v, m in loss.items()},
               "full_over_lean_loss_memory": round(loss["full"] / loss["lean"], 2)}
    Path(a.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
