"""The R3V loop's steps as plain functions over a run folder (Prefect tasks wrap these one to one).

    prepare -> warmup -> evaluate(0)
    for k in 1..K:  rollout(k) -> judge(k) -> build_sets(k) -> train(k) -> evaluate(k)
    report

rollout(k) is made of shards (blocks of train questions): plan_shards(k) fixes the layout,
rollout_shard(k, j) samples one (the flow maps these over tasks), rollout(k) records the step.

Each step takes the run folder and the iteration, reads its inputs from the store, writes its
outputs atomically and returns a small dict of facts; a finished step returns its recorded facts
at once. Model for iteration k's rollout: M_{k-1} (M_0, the warm-up's model, for k=1). Model trained at
iteration k: a fresh LoRA on M_0 (train.init=base, the authors' choice) or the continued adapter
of k-1 (train.init=continue).

Departures from the paper: the warm-up set is the embedded seed split's gold rationales instead
of GPT-distilled ones; the warm-up fully fine-tunes the tiny model's projector and language
model (random weights; its vision tower was pretrained at build time and stays frozen), the
iterations train LoRA adapters as the paper does. By default an iteration trains on the
self-generated sets alone; the authors' released code also puts the anchor data in every
iteration's file (the warm-up's gold rationales and every train question's direct answer) and
trains 3 epochs over the mix: `train.anchor=true` (`train.epochs`, `train.max_steps=0`) does that;
which is better on the embedded benchmark is not measured yet (issue 30). A positive is a
rationale: judge() records `has_rationale`, and the SFT set and y+ take only such positives.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from r3v import prompts
from r3v.datasets import load_splits
from r3v.embedded.model.build import ensure_built
from r3v.evaluate import evaluate as run_eval
from r3v.judge import judge_for_question, shuffle_verdicts
from r3v.ledger import begin, record, shard_done
from r3v.rationale import is_rationale, judge_checking_reading
from r3v.rollout import RolloutRequest, SamplingParams, release, sample_seeds, sampling_params
from r3v.run import Run
from r3v.schema import (
    ASK_SCHEMA,
    EVAL_METRIC_SCHEMA,
    EVAL_SCHEMA,
    ROLLOUT_SCHEMA,
    SAMPLE_SCHEMA,
    SHARD_SCHEMA,
)
from r3v.sets import write_sets
from r3v.sq.qar import sample_chains
from r3v.sq.selfq import ask as sample_questions
from r3v.sq.selfq import image_key
from r3v.step_table import SCALING_NS, STEPS
from r3v.trainer.launch import run_stage
from r3v.trainer.stages import untrained_m0

log = logging.getLogger(__name__)


def step(name: str, fresh: Callable[..., bool] | None = None):
    """Make `recipe` the step `name` of r3v/step_table.py, inside the ledger: open the run, return the
    recorded facts at once when the step is finished with its outputs and inputs intact (and, when
    given, `fresh(facts, *args)` says they answer this call), else run the recipe and record what it
    returns, with what `verify` compares. The recipe takes the open `Run` (and the iteration, for a
    step of an iteration) and returns its facts, or (facts, seconds spent elsewhere for it: the
    rollout's shards, which ran as tasks of their own), added to its own wall time."""
    per_iteration = "{iteration}" in STEPS[name].run_name

    def wrap(recipe):
        def around(run_dir: str, iteration: int, args: tuple, kw: dict) -> dict:
            run, finished, t0 = begin(run_dir, iteration, name)
            if finished and (fresh is None or fresh(finished, *args, **kw)):
                return finished
            facts = recipe(run, iteration, *args, **kw) if per_iteration else recipe(run, *args, **kw)
            elsewhere = None
            if isinstance(facts, tuple):
                facts, elsewhere = facts
            seconds = None if elsewhere is None else elsewhere + time.perf_counter() - t0
            return record(run, iteration, name, t0, facts, seconds=seconds)

        if per_iteration:
            @functools.wraps(recipe)
            def run_step(run_dir: str, iteration: int, *args, **kw) -> dict:
                return around(run_dir, iteration, args, kw)
        else:
            @functools.wraps(recipe)
            def run_step(run_dir: str, *args, **kw) -> dict:
                return around(run_dir, 0, args, kw)
        run_step.recipe = recipe
        return run_step
    return wrap


@step("prepare")
def prepare(run: Run) -> dict:
    """Read the questions into the store and resolve the base model (building the embedded one)."""
    cfg = run.cfg
    counts, bad = {}, {}
    for split, (table, report) in load_splits(cfg.data).items():
        run.store.write("questions", table, split=split)
        counts[split], bad[split] = table.num_rows, report.to_dict()
    (run.dir / "questions" / "bad_rows.json").write_text(json.dumps(bad, indent=2))
    for split, rep in bad.items():
        if rep["skipped"]:
            log.warning("%s split: skipped %d bad rows of %d (see %s)", split, rep["skipped"], rep["total"],
                        run.dir / "questions" / "bad_rows.json")
    if cfg.model.source == "embedded":
        model_path = ensure_built(cfg.model.embedded, cfg.model.cache_dir).resolve()
    else:
        model_path = Path(cfg.model.source).expanduser().resolve()
        if not (model_path / "config.json").exists():
            raise FileNotFoundError(f"model.source={cfg.model.source}: no config.json (Hugging Face layout) there")
    run.update_meta(source_model=str(model_path), base_model=str(model_path))
    skipped = {s: r["skipped"] for s, r in bad.items()}
    return {"questions": counts, "skipped_bad_rows": skipped, "source_model": str(model_path)}


@step("warmup")
def warmup(run: Run, progress: Callable[[int, int], None] | None = None) -> dict:
    """Warm-up: train the source model on the seed split (rationales + direct answers) -> M_0
    (r3v/trainer/stages.py; in train.processes processes when set). Off, or with no seed split, M_0
    is the source model (with SQ-LLaVA's extractor installed, when configured)."""
    cfg = run.cfg
    if not cfg.warmup.enabled or not run.store.exists("questions", split="seed") or not run.questions("seed"):
        facts = {"skipped": True, "base_model": untrained_m0(run)}
        run.update_meta(base_model=facts["base_model"])
        return facts
    facts = run_stage(run, "warmup", 0, progress)
    run.update_meta(base_model=facts["base_model"])
    return facts


def plan_shards(run_dir: str, iteration: int, shard_size: int | None = None) -> list[int]:
    """The rollout shards of iteration k: blocks of `shard_size` train questions (default: the
    run's orchestration.shard_size). The layout is fixed at its first call and kept in run.json,
    so a retry made with another shard size finishes the layout it started."""
    run = Run.open(run_dir)
    plans = run.meta.get("rollout_shards", {})
    if str(iteration) not in plans:
        size = run.cfg.orchestration.shard_size if shard_size is None else shard_size
        if size < 0:
            raise ValueError(f"orchestration.shard_size must be >= 0, got {size}")
        n = run.store.read("questions", split="train").num_rows
        plans = {**plans, str(iteration): {"shard_size": size, "shards": max(1, -(-n // size)) if size else 1}}
        run.update_meta(rollout_shards=plans)
    return list(range(plans[str(iteration)]["shards"]))


def rollout_shard(run_dir: str, iteration: int, shard: int) -> dict:
    """Sample N CoT rationales with M_{k-1} for the train questions of one shard ->
    rollouts/iteration=k/shard=j, then its record in shards/ (a finished shard returns at once)."""
    run, finished, t0 = begin(run_dir, iteration, "rollout")
    if finished:
        return {"shard": shard, "done_before": True}
    rec = shard_done(run, iteration, shard)
    if rec is not None:
        return {**rec, "done_before": True}

    plans = run.meta.get("rollout_shards", {})
    if str(iteration) not in plans:
        raise RuntimeError(f"iteration {iteration}: no shard layout in {run.dir / 'run.json'} (call plan_shards first)")
    size, n_shards = plans[str(iteration)]["shard_size"], plans[str(iteration)]["shards"]
    if not 0 <= shard < n_shards:
        raise ValueError(f"iteration {iteration}: shard {shard} is not one of the layout's {n_shards} shards")
    started = datetime.now(UTC)
    cfg, rc = run.cfg, run.cfg.rollout
    questions = run.questions("train")
    questions = questions[shard * size:(shard + 1) * size] if size else questions
    sampler = run.sampler(iteration - 1)
    requests = [RolloutRequest(q["id"], q["image"]["bytes"], tuple(prompts.cot(q["question"], q["choices"])),
                               sample_seeds(cfg.run.seed, iteration, q["id"], rc.n)) for q in questions]
    outs = sampler.generate(requests, sampling_params(rc))
    ref = run.model_ref(iteration - 1)
    rows = [dict(sample_id=f"{req.key}#{iteration}#{i}", question_id=req.key, iteration=iteration, sample_index=i,
                 seed=req.seeds[i], prompt_kind="cot", rationale=c.text, finished=c.finished, model_ref=ref,
                 prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, seconds=c.seconds)
            for req, comps in zip(requests, outs) for i, c in enumerate(comps)]
    if cfg.qar.rollout_n > 0:  # Questioner -> Answerer -> Reasoner chains next to the CoT samples
        seeds = [sample_seeds(cfg.run.seed, iteration, q["id"], cfg.qar.rollout_n, tag="qar") for q in questions]
        for q, ss, chains in zip(questions, seeds, sample_chains(sampler, questions, seeds, sampling_params(rc), cfg.qar)):
            rows += [dict(sample_id=f"{q['id']}#{iteration}#{rc.n + i}", question_id=q["id"], iteration=iteration,
                          sample_index=rc.n + i, seed=ss[i], prompt_kind="qar", rationale=c.text, finished=c.finished,
                          model_ref=ref, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                          seconds=c.seconds, chain=[{"question": a, "answer": b} for a, b in c.pairs])
                     for i, c in enumerate(chains)]
        order = {q["id"]: i for i, q in enumerate(questions)}
        rows.sort(key=lambda r: (order[r["question_id"]], r["sample_index"]))
    run.store.write("rollouts", pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA), iteration=iteration, shard=shard)
    facts = dict(questions=len(questions), samples=len(rows), first_question=questions[0]["id"] if questions else None,
                 last_question=questions[-1]["id"] if questions else None, seconds=time.perf_counter() - t0,
                 started_at=started, finished_at=datetime.now(UTC), worker=f"{socket.gethostname()}:{os.getpid()}")
    run.store.write("shards", pa.Table.from_pylist([facts], schema=SHARD_SCHEMA), iteration=iteration, shard=shard)
    log.info("iteration %d rollout shard %d/%d: %d samples in %.1fs", iteration, shard + 1, n_shards, len(rows),
             facts["seconds"])
    return {"shard": shard, **facts, "done_before": False}


@step("rollout")
def rollout(run: Run, iteration: int) -> tuple[dict, float]:
    """Sample N CoT rationales per train question with M_{k-1} -> rollouts/iteration=k/shard=*.

    Runs the shards that are not finished yet (the flow runs them as mapped tasks first, so here
    it only checks them) and records the step; its time is the shards' summed wall time (compute,
    more than the elapsed time when shards ran in parallel)."""
    shards = plan_shards(str(run.dir), iteration)
    for j in shards:
        rollout_shard(str(run.dir), iteration, j)
    recs = run.store.read("shards", iteration=iteration).to_pylist()
    if sorted(r["shard"] for r in recs) != shards:
        raise RuntimeError(f"iteration {iteration}: shard records {sorted(r['shard'] for r in recs)} do not match "
                           f"the layout's shards {shards} ({run.dir / 'shards'})")
    return ({"questions": sum(r["questions"] for r in recs), "samples": sum(r["samples"] for r in recs),
             "shards": len(shards), "model_ref": run.model_ref(iteration - 1), "device": str(run.device)},
            sum(r["seconds"] for r in recs))


@step("judge")
def judge(run: Run, iteration: int) -> dict:
    """Judge each rollout's final answer against the gold answer -> samples/iteration=k (the pool)."""
    qs = {q["id"]: q for q in run.questions("train")}
    # shards are contiguous blocks of questions: in shard order the rows are in question order
    rows = sorted(run.store.read("rollouts", iteration=iteration).to_pylist(), key=lambda r: r["shard"])
    tol, check, generic = run.cfg.judge.relaxed_tolerance, run.cfg.judge.check_reading, run.cfg.judge.relaxed_generic
    for r in rows:
        q = qs[r["question_id"]]
        ans, v = (judge_checking_reading if check else judge_for_question)(r["rationale"], q, tol, generic)
        r.update(answer=ans, gold=q["answer"], correct=v.correct, judge_reason=v.reason,
                 has_rationale=is_rationale(r["rationale"], q, run.cfg.judge.min_rationale_words))
    if run.cfg.judge.shuffle_labels:  # the canary arm: the same number of positives, on random samples
        shuffle_verdicts(rows, f"{run.cfg.run.seed}:{iteration}:canary")
    run.store.write("samples", pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), iteration=iteration)
    n_pos = sum(r["correct"] for r in rows)
    reasons = dict(Counter(r["judge_reason"] for r in rows))
    return {"samples": len(rows), "positives": n_pos, "negatives": len(rows) - n_pos, "reasons": reasons,
            "rationale_free": sum(not r["has_rationale"] for r in rows)}


@step("build_sets")
def build_sets(run: Run, iteration: int) -> dict:
    """SFT, refine and select sets from the pool of iterations 1..k -> sets/iteration=k/kind=*."""
    return write_sets(run.store, iteration, run.cfg.run.seed, run.cfg.sq, run.cfg.qar.rollout_n > 0)


@step("train")
def train(run: Run, iteration: int, progress: Callable[[int, int], None] | None = None) -> dict:
    """L = λ_sft·L_SFT + λ_ref·L_REF + λ_sel·L_SEL (+ λ_sq·L_SQ) with LoRA on M_0 -> checkpoints/iteration=k
    (r3v/trainer/stages.py; in train.processes processes when set). `progress(step, total)` is
    called after each optimizer step."""
    release(run.cfg.rollout)  # the rollout engine sleeps (or shuts down) while the trainer has the device
    return run_stage(run, "train", iteration, progress)


@step("evaluate")
def evaluate(run: Run, iteration: int) -> dict:
    """pass@1, maj@N, oracle@N, select@N of M_k on the test split -> eval/, eval_metrics/."""
    cfg, rc = run.cfg, run.cfg.rollout
    questions = _test_questions(run)
    sampler = run.sampler(iteration)
    preds, metrics = run_eval(sampler, questions, iteration, cfg.run.seed, cfg.eval.n,
                              sampling_params(rc), cfg.judge.relaxed_tolerance, cfg.eval.strategy, cfg.qar,
                              relaxed_generic=cfg.judge.relaxed_generic)
    run.store.write("eval", pa.Table.from_pylist(preds, schema=EVAL_SCHEMA), iteration=iteration)
    run.store.write("eval_metrics", pa.Table.from_pylist(metrics, schema=EVAL_METRIC_SCHEMA), iteration=iteration)
    return {**{m["metric"]: round(m["value"], 4) for m in metrics}, "device": str(run.device)}


def _same_ns(finished: dict, ns: tuple[int, ...] = SCALING_NS) -> bool:
    return tuple(finished.get("ns", ())) == tuple(sorted(set(ns)))


@step("scale", fresh=_same_ns)
def scale(run: Run, iteration: int, ns: tuple[int, ...] = SCALING_NS) -> dict:
    """Test-time compute scaling of M_k: pass@1, maj@N, oracle@N, select@N for each N in `ns`
    -> scaling/, scaling_eval/ (redone when asked for other N than the recorded ones)."""
    ns = tuple(sorted(set(ns)))

    cfg, rc = run.cfg, run.cfg.rollout
    questions = _test_questions(run)
    preds, metrics = run_eval(run.sampler(iteration), questions, iteration, cfg.run.seed, ns,
                              sampling_params(rc), cfg.judge.relaxed_tolerance, cfg.eval.strategy, cfg.qar,
                              relaxed_generic=cfg.judge.relaxed_generic)
    run.store.write("scaling_eval", pa.Table.from_pylist(preds, schema=EVAL_SCHEMA), iteration=iteration)
    run.store.write("scaling", pa.Table.from_pylist(metrics, schema=EVAL_METRIC_SCHEMA), iteration=iteration)
    return {"ns": list(ns), **{m["metric"]: round(m["value"], 4) for m in metrics}}


def ask(run_dir: str, iteration: int, split: str = "test", n: int = 3, max_images: int = 0) -> dict:
    """Self-generated questions of M_k (SQ-LLaVA's virtual user), `n` per image of `split`
    -> asked/iteration=k/split=<split> (redone on every call: asking is a probe, not a step)."""
    run = Run.open(run_dir)
    sq, stop = run.cfg.sq, tuple(run.cfg.rollout.stop)
    if not run.store.exists("questions", split=split):
        raise ValueError(f"{run.dir}: no {split} split")
    firsts: dict[str, dict] = {}
    for q in run.questions(split):
        firsts.setdefault(image_key(q), q)
    images = list(firsts.values())[:max_images or None]
    rows = sample_questions(run.sampler(iteration), images, n, SamplingParams(
        sq.ask_temperature, sq.ask_top_p, sq.ask_max_new_tokens, stop), run.cfg.run.seed, iteration)
    for r in rows:
        r.update(iteration=iteration, split=split)
    run.store.write("asked", pa.Table.from_pylist(rows, schema=ASK_SCHEMA), iteration=iteration, split=split)
    total = len(rows) or 1
    return {"images": len(images), "asked": len(rows),
            "finished": round(sum(r["finished"] for r in rows) / total, 4),
            "questions": round(sum(r["asked"].rstrip().endswith("?") for r in rows) / total, 4),
            "novel": round(sum(r["novel"] for r in rows) / total, 4),
            "distinct": len({r["asked"] for r in rows})}


def _test_questions(run: Run) -> list[dict]:
    questions = run.questions("test")
    return questions[:run.cfg.eval.max_questions] if run.cfg.eval.max_questions else questions
