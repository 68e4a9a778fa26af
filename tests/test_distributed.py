"""Training at scale, proved on this CPU with real processes: 2 data-parallel processes (torchrun,
gloo) train the adapter a single process trains; a killed rank fails the step with a clear error
and the retry resumes from the last mid-training checkpoint; a SIGKILLed single-process training
(the warm-up and an iteration's LoRA) resumes from its checkpoint, to the same bits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from r3v import prompts, steps
from r3v.config import load_config
from r3v.run import init_run

pytestmark = pytest.mark.slow

OVERRIDES = ["run.iterations=1", "data.embedded.n_seed=48", "data.embedded.n_train=32", "data.embedded.n_test=4",
             "warmup.steps=12", "warmup.batch_size=8", "warmup.warmup_steps=2", "train.max_steps=10", "train.batch_size=4",
             "train.grad_accum=2", "train.lora_dropout=0.0", "train.save_every=2", "run.torch_threads=2"]


def _run(root: Path, name: str, model: list[str], extra=()) -> str:
    cfg = load_config(overrides=OVERRIDES + model + [f"run.root={root}", f"run.name={name}", *extra])
    run_dir = str(init_run(cfg))
    steps.prepare(run_dir)
    return run_dir


def _with_sets(run_dir: str) -> str:
    """Iteration 1's sets written straight into the store (SFT answers and refine pairs on the train
    questions), so the training steps run without a rollout."""
    from r3v.run import Run
    from r3v.schema import SET_SCHEMA

    run = Run.open(run_dir)
    run.update_meta(base_model=run.meta["source_model"])
    rows = []
    for i, q in enumerate(run.questions("train")):
        kind = "sft" if i % 2 else "refine"
        rows.append(dict(example_id=f"{q['id']}-{kind}", iteration=1, kind=kind, question_id=q["id"],
                         negative="Objects: none. Answer: 0" if kind == "refine" else None,
                         target=prompts.answer_target(q["answer"])))
    for kind in ("sft", "refine"):
        run.store.write("sets", pa.Table.from_pylist([r for r in rows if r["kind"] == kind], schema=SET_SCHEMA),
                        iteration=1, kind=kind)
    return run_dir


def _adapter(run_dir: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "checkpoints" / "iteration=1" / "adapter_model.safetensors"))


def _train_log(run_dir: str, iteration: int) -> list[dict]:
    from r3v.store import Store

    return Store(run_dir).read("train_log", iteration=iteration).to_pylist()


def _wait_for_checkpoint(folder: Path, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not (folder / "checkpoint" / "step.json").exists():
        if time.monotonic() > end:
            raise TimeoutError(f"no checkpoint in {folder}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def single(tmp_path_factory, model_overrides, embedded_model):
    """Iteration 1 trained in this process, uninterrupted: the reference adapter."""
    run_dir = _with_sets(_run(tmp_path_factory.mktemp("runs"), "single", model_overrides))
    steps.train(run_dir, 1)
    return run_dir


def test_two_processes_train_the_single_process_adapter_and_survive_a_killed_rank(single, tmp_path, model_overrides):
    """2 gloo processes, one SIGKILLed after the first checkpoint: torchrun stops, the step fails and
    says why; the retry resumes from the checkpoint. Every step's losses and the final adapter are
    the single process's (same global batch) to float tolerance."""
    killed = _with_sets(_run(tmp_path, "ddp", model_overrides, ["train.processes=2"]))
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(error=_capture(lambda: steps.train(killed, 1))))
    thread.start()
    _wait_for_checkpoint(Path(killed) / "train_state" / "iteration=1")
    ranks = _worker_pids(killed)
    assert len(ranks) == 2
    os.kill(max(ranks), signal.SIGKILL)
    thread.join(300)
    error = outcome["error"]
    assert error is not None and type(error).__name__ == "TrainingFailed", error
    assert "torchrun exited with code" in str(error) and "a retry resumes from its checkpoint after step" in str(error)
    facts = steps.train(killed, 1)  # the retry
    assert 0 < facts["resumed_from_step"] < 10
    result = json.loads((Path(killed) / "train_state" / "iteration=1" / "result.json").read_text())
    assert result["processes"] == 2 and result["device"] == "cpu"
    log = _train_log(killed, 1)
    assert [r["step"] for r in log] == list(range(10))
    assert {r["attempt"] for r in log if r["step"] < facts["resumed_from_step"]} == {0}
    assert {r["attempt"] for r in log if r["step"] >= facts["resumed_from_step"]} == {1}
    for x, y in zip(_train_log(single, 1), log):
        assert abs(x["loss_total"] - y["loss_total"]) < 1e-4 and x["tokens_sft"] == y["tokens_sft"]
    a, b = _adapter(single), _adapter(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-6)


def _capture(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - handed to the test's assertions
        return e
    return None


def _worker_pids(run_dir: str) -> list[int]:
    """The torchrun workers (not torchrun itself) training `run_dir`."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"r3v.trainer.worker" in cmd and run_dir.encode() in cmd and b"torch.distributed.run" not in cmd:
            out.append(int(p.name))
    return out


def _kill_mid_training(run_dir: str, step: str, state: str) -> None:
    """Run `steps.<step>` in a child process and SIGKILL it once its first checkpoint is saved."""
    code = f"from r3v import steps; steps.{step}({run_dir!r}{', 1' if step == 'train' else ''})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(Path(run_dir) / "train_state" / state)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_sigkilled_lora_training_resumes_to_the_same_bits(single, tmp_path, model_overrides):
    run_dir = _with_sets(_run(tmp_path, "resume", model_overrides))
    _kill_mid_training(run_dir, "train", "iteration=1")
    assert not (Path(run_dir) / "checkpoints" / "iteration=1").exists()
    facts = steps.train(run_dir, 1)
    assert 0 < facts["resumed_from_step"] < 10
    a, b = _adapter(single), _adapter(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (Path(run_dir) / "train_state" / "iteration=1" / "checkpoint").exists()  # dropped when done


def test_sigkilled_warmup_resumes_to_the_same_bits(tmp_path, model_overrides, embedded_model):
    ref, run_dir = (_run(tmp_path, name, model_overrides) for name in ("seed-ref", "seed-killed"))
    steps.warmup(ref)
    _kill_mid_training(run_dir, "warmup", "warmup")
    facts = steps.warmup(run_dir)
    assert 0 < facts["resumed_from_step"] < 12
    log = _train_log(run_dir, 0)
    assert [r["step"] for r in log] == list(range(12)) and log[0]["attempt"] == 0 and log[-1]["attempt"] == 1
    a, b = (load_file(str(Path(d) / "checkpoints" / "warmup" / "model.safetensors")) for d in (ref, run_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
