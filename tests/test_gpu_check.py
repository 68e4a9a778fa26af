"""bench/gpu_check.py, the script prepared for a lent GPU, runs here on the CPU (run.device=cpu):
one iteration of the flow, each model step on the device asked for, and the bf16 +
gradient-checkpointing warm-up and LoRA steps on a (tiny) random Qwen2-VL."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_gpu_check_runs_on_cpu(cache_dir, seed_model, tmp_path):
    """From the flow fixture's trained M_0 (no second warm-up): the flow's steps from there on."""
    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).parents[1] / "bench" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = gpu_check.main(["--device", "cpu", "--small", "--cache-dir", str(cache_dir), "--out", str(tmp_path / "g.json"),
                          "--model", str(seed_model)])
    steps = {(s["iteration"], s["step"]): s["device"] for s in out["flow_iteration"]["steps"]}
    assert steps[(0, "warmup")] == "-"  # skipped: started from a trained model
    for key in ((0, "evaluate"), (1, "rollout"), (1, "train"), (1, "evaluate")):
        assert steps[key] == "cpu", key
    assert set(out["flow_iteration"]["pass@1"]) == {0, 1}
    q = out["qwen2_vl"]
    assert q["device"] == "cpu" and q["dtype"] == "bfloat16"
    for stage in ("warm-up (full fine-tuning, vision frozen)", "LoRA r=128 on the language model"):
        assert q[stage]["steps"] == 2 and q[stage]["tokens_per_s"] > 0 and q[stage]["peak_memory_mb"] > 0
    assert (tmp_path / "g.json").exists()
