"""The two training stages of a run: the warm-up (-> M_0) and iteration k's training
(LoRA on M_0, or the continued adapter -> M_k).

Each runs in one process, or in every process of a torchrun launch (r3v/trainer/launch.py):
every process builds the same model and examples and trains its share of each step; the main
process writes the outputs (checkpoint, train log) and the facts returned. Mid-training
checkpoints go to `train_state/<stage>/` and are dropped once the stage's outputs are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from r3v import objective
from r3v.ledger import done, file_hash
from r3v.run import Run
from r3v.schema import TRAIN_LOG_SCHEMA
from r3v.sq.qar import role_examples
from r3v.sq.selfq import examples_from_sq_rows, seed_sq_examples
from r3v.step_table import STEPS
from r3v.store import atomic_dir

log = logging.getLogger(__name__)

OnProgress = Callable[[int, int], None]
"""`progress(done, total)`: called after each optimizer step (a progress card, a bar)."""


def state_dir(run: Run, stage: str, iteration: int) -> Path:
    """Where the stage keeps its mid-training checkpoints (`state` in r3v/step_table.py). A run folder
    of an older version may hold them under the step's former name: moved here, so training resumes."""
    spec = STEPS[stage]
    folder = run.dir / spec.state.format(iteration=iteration)
    former = run.dir / spec.state.replace(spec.name, spec.formerly).format(iteration=iteration) if spec.formerly else None
    if former is not None and former.is_dir() and not folder.exists():
        log.warning("%s: the %s's mid-training state is under its former name %s; moved to %s", run.dir, stage,
                    former.name, folder.name)
        former.rename(folder)
    return folder


def loop_spec(cfg, **kw):
    """A LoopSpec with the run's precision, memory and checkpoint settings (train.*)."""
    from r3v.trainer.loop import LoopSpec

    tc = cfg.train
    return LoopSpec(precision=tc.precision, gradient_checkpointing=tc.gradient_checkpointing, lean_loss=tc.lean_loss,
                    loss_chunk_mb=tc.loss_chunk_mb, save_every=tc.save_every, **kw)


def _on_step(progress: OnProgress | None):
    return (lambda rec: progress(rec["step"] + 1, rec["total_steps"])) if progress else None


def warmup_stage(run: Run, iteration: int = 0, progress: OnProgress | None = None) -> dict:
    """Warm-up: train the source model on the seed split (rationales + direct answers) -> M_0."""
    from r3v import prototype
    from r3v.models import freeze_vision_tower, load_model, load_processor, save_model
    from r3v.trainer import dist, state
    from r3v.trainer.data import encode_all, seed_examples
    from r3v.trainer.loop import train

    cfg = run.cfg
    src = run.meta["source_model"]
    model, processor = load_model(src, cfg.model.dtype, device=run.device), load_processor(src)
    pc = cfg.model.prototype
    if pc.enabled and not hasattr(model, prototype.NAME):
        prototype.install(model, prototype.clusters_for(model, pc.clusters, pc.cluster_fraction), pc.em_steps,
                          seed=cfg.run.seed)
    if not cfg.warmup.train_vision:
        freeze_vision_tower(model)
    questions = run.questions("seed")
    examples = seed_examples(questions, cfg.warmup.direct_answers)
    if cfg.sq.enabled and cfg.sq.warmup:
        examples += seed_sq_examples(questions, cfg.run.seed, cfg.sq)
    data = encode_all(processor, examples, cfg.train.max_length)
    spec = loop_spec(cfg, lr=cfg.warmup.lr, batch_size=cfg.warmup.batch_size, max_steps=cfg.warmup.steps,
                     warmup_steps=cfg.warmup.warmup_steps, weight_decay=cfg.warmup.weight_decay, seed=cfg.run.seed,
                     lr_by_name=prototype.lr_by_name(cfg.model.prototype))
    weights = objective.weights(cfg, "warmup")
    folder = state_dir(run, "warmup", 0)
    logs = train(model, data, spec, weights, processor.tokenizer.pad_token_id, on_step=_on_step(progress),
                 state_dir=folder)
    out = run.dir / "checkpoints" / "warmup"
    if dist.is_main():
        save_model(model, processor, out)
        _write_train_log(run, 0, logs)
        state.clear(folder)
    return {"examples": len(data), "steps": len(logs), "final_loss": logs[-1]["loss/total"],
            "resumed_from_step": _resumed(logs), "base_model": str(out), "device": str(run.device)}


def untrained_m0(run: Run) -> str:
    """M_0 without a warm-up: the source model itself, or, with SQ-LLaVA's prototype extractor
    configured, the source model with a fresh one installed (untrained; gate 0: output-neutral), saved
    as checkpoints/warmup. Its path."""
    pc = run.cfg.model.prototype
    src = run.meta["source_model"]
    if not pc.enabled:
        return src
    from r3v import prototype
    from r3v.models import load_model, load_processor, save_model

    model = load_model(src, run.cfg.model.dtype)
    if not hasattr(model, prototype.NAME):
        prototype.install(model, prototype.clusters_for(model, pc.clusters, pc.cluster_fraction), pc.em_steps,
                          seed=run.cfg.run.seed)
    return str(save_model(model, load_processor(src), run.dir / "checkpoints" / "warmup"))


def iteration_stage(run: Run, iteration: int, progress: OnProgress | None = None) -> dict:
    """M_k: LoRA on M_0 (or the continued adapter) trained on L = Σ λ_t·L_t over r3v.objective.TERMS
    (λ_sft·L_SFT + λ_ref·L_REF + λ_sel·L_SEL + λ_sq·L_SQ) -> checkpoints/iteration=k."""
    from r3v.models import load_processor
    from r3v.trainer import dist, state
    from r3v.trainer.data import encode_all
    from r3v.trainer.loop import train

    cfg, tc = run.cfg, run.cfg.train
    weights = objective.weights(cfg, "train")
    model = _iteration_model(run, iteration)
    processor = load_processor(run.meta["base_model"])
    data = encode_all(processor, _iteration_examples(run, iteration, weights), tc.max_length)
    if not data:
        raise RuntimeError(f"iteration {iteration}: nothing to train on (set sizes {done(run, iteration, 'build_sets')}, "
                           f"weights {weights}); with no positive sample in the pool, M_{iteration - 1} never "
                           f"answered a train question correctly (`SELECT judge_reason, count(*) FROM samples GROUP BY 1`)")
    from r3v import prototype

    spec = loop_spec(cfg, lr=tc.lr, batch_size=tc.batch_size, grad_accum=tc.grad_accum, epochs=tc.epochs,
                     max_steps=tc.max_steps, warmup_ratio=tc.warmup_ratio, max_grad_norm=tc.max_grad_norm,
                     weight_decay=tc.weight_decay, group_by_length=tc.group_by_length, seed=cfg.run.seed + iteration,
                     lr_by_name=prototype.lr_by_name(cfg.model.prototype))
    folder = state_dir(run, "train", iteration)
    logs = train(model, data, spec, weights, processor.tokenizer.pad_token_id, on_step=_on_step(progress),
                 state_dir=folder)
    adapter_hash = _save_adapter(run, iteration, model, len(data), len(logs)) if dist.is_main() else None
    if dist.is_main():
        _write_train_log(run, iteration, logs)
        state.clear(folder)
    return {"examples": len(data), "steps": len(logs), "adapter_hash": adapter_hash,
            "resumed_from_step": _resumed(logs), "device": str(run.device),
            **{k: round(v, 4) for k, v in logs[-1].items() if k.startswith("loss/")}}


def _iteration_model(run: Run, iteration: int):
    """M_0 with a fresh LoRA adapter (train.init=base), or M_{k-1}'s adapter to continue
    (train.init=continue); SQ-LLaVA's prototype extractor trained fully beside it when there is one."""
    from r3v import prototype
    from r3v.models import add_lora, load_model

    cfg, tc, pc = run.cfg, run.cfg.train, run.cfg.model.prototype
    model = load_model(run.meta["base_model"], cfg.model.dtype, device=run.device)
    if tc.init == "continue" and iteration > 1:
        from peft import PeftModel

        prototype.for_adapter(model, run.adapter(iteration - 1))
        return PeftModel.from_pretrained(model, str(run.adapter(iteration - 1)), is_trainable=True)
    if pc.enabled:  # M_0 without an extractor (a shared M_0): a gate-0 one, trained from here
        prototype.ensure(model, prototype.clusters_for(model, pc.clusters, pc.cluster_fraction), pc.em_steps,
                         seed=cfg.run.seed)
    return add_lora(model, tc.lora_r, tc.lora_alpha, tc.lora_dropout, tc.target_modules,
                    seed=cfg.run.seed + iteration, vision_r=tc.vision_lora_r, vision_alpha=tc.vision_lora_alpha,
                    modules_to_save=[prototype.NAME] if hasattr(model, prototype.NAME) else None)


def _iteration_examples(run: Run, iteration: int, weights: dict[str, float]) -> list:
    """The examples of iteration k's sets (sets/iteration=k/): the R3V sets, the self-questioning
    samples (sq) and the role turns of positive chains (qar), and with `train.anchor` the anchor
    data (the seed split's gold rationales and the train questions' direct answers, in L_SFT). A
    set whose term weighs 0 is left out, not computed and multiplied by 0 (the STaR arm trains
    the SFT set only)."""
    from r3v.trainer.data import examples_from_sets

    qs = {q["id"]: q for q in run.questions("train")}
    rows = [r for r in run.store.read("sets", iteration=iteration).to_pylist()
            if weights[objective.TERM_OF_KIND[r["kind"]]] > 0]
    examples = examples_from_sets([r for r in rows if r["kind"] not in ("sq", "qar")], qs)
    tc = run.cfg.train
    if tc.anchor and weights["sft"] > 0 and run.store.exists("questions", split="seed"):
        from r3v.trainer.data import anchor_examples

        examples += anchor_examples(run.questions("seed"), list(qs.values()), tc.anchor_rationales,
                                    run.cfg.run.seed + iteration)
    if any(r["kind"] == "sq" for r in rows):
        examples += examples_from_sq_rows([r for r in rows if r["kind"] == "sq"], qs)
    if any(r["kind"] == "qar" for r in rows):
        examples += [ex for r in rows if r["kind"] == "qar"
                     for ex in role_examples(qs[r["question_id"]], r["chain"], r["target"])]
    return examples


def _save_adapter(run: Run, iteration: int, model, examples: int, steps: int) -> str:
    """checkpoints/iteration=k/: the adapter (with the extractor's config) and its manifest; its hash."""
    from r3v import prototype

    final = run.dir / "checkpoints" / f"iteration={iteration}"
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp)
        prototype.write_config(model.base_model.model, tmp)
        adapter_hash = file_hash(tmp / "adapter_model.safetensors")
        manifest = {"iteration": iteration, "base_model": run.meta["base_model"], "init": run.cfg.train.init,
                    "adapter_hash": adapter_hash, "examples": examples, "steps": steps,
                    "config_hash": run.cfg.hash()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return adapter_hash


def _resumed(logs: list[dict]) -> int:
    """The step this attempt started from (0: it trained from the start)."""
    last = logs[-1].get("attempt", 0)
    return next(i for i, r in enumerate(logs) if r.get("attempt", 0) == last)


STAGES = {"warmup": warmup_stage, "train": iteration_stage}


def _write_train_log(run: Run, iteration: int, logs: list[dict]) -> None:
    """The stage's per-step log -> the `train_log` table (one loss and token column per loss term)."""
    rows = [{"step": r["step"], "epoch": r["epoch"], "lr": r["lr"], "grad_norm": r["grad_norm"],
             "seconds": r["seconds"], "loss_total": r.get("loss/total"), "attempt": r.get("attempt", 0),
             **{c: v for t in objective.TERMS for c, v in ((t.loss_column, r.get(t.log_key)),
                                                          (t.tokens_column, r.get(t.tokens_key, 0)))}}
            for r in logs]
    run.store.write("train_log", pa.Table.from_pylist(rows, schema=TRAIN_LOG_SCHEMA), iteration=iteration)
