"""Transformers rollout backend: batched `generate` with one RNG per sample.

HF `generate` samples a batch from one generator, which would tie a sample to its batch
neighbours. Here each row carries its own `torch.Generator` seeded with the row's derived seed:
a logits processor draws the row's token (temperature, top-p) and leaves only that token
finite, and `generate` then runs greedily. The KV cache, padding and stopping stay HF's.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from r3v.progress import bar as progress_bar
from r3v.prompts import generation_prompt
from r3v.rollout.sampler import Completion, RolloutRequest, SamplingParams


class PerRowSampler(LogitsProcessor):
    """Samples each row with its own generator; returns scores with only the drawn token finite."""

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float):
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)  # [B, V]
        if self.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < self.top_p  # always keeps the top token
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        out = torch.full_like(scores, float("-inf"))
        probs = probs.cpu()  # drawn with CPU generators: the same seed draws alike on any device
        for b, gen in enumerate(self.generators):
            out[b, int(torch.multinomial(probs[b], 1, generator=gen))] = 0.0
        return out


class TransformersSampler:
    def __init__(self, model, processor, batch_size: int = 64, progress: bool = True):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.progress = progress
        tok = processor.tokenizer
        eos = model.generation_config.eos_token_id or tok.eos_token_id
        self.eos_ids = list(eos) if isinstance(eos, list | tuple) else [eos]  # real models may have several
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_ids[0]

    @torch.inference_mode()
    def generate(self, requests: Sequence[RolloutRequest], params: SamplingParams) -> list[list[Completion]]:
        rows = [(ri, si) for ri, r in enumerate(requests) for si in range(len(r.seeds))]
        images = {}
        prompts = {}
        results: list[list[Completion | None]] = [[None] * len(r.seeds) for r in requests]
        bar = progress_bar(total=len(rows), desc="rollout", unit="sample", disable=not self.progress, leave=False)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            for ri, _ in chunk:
                if ri not in prompts:
                    req = requests[ri]
                    images[ri] = Image.open(io.BytesIO(req.image)).convert("RGB")
                    prompts[ri] = generation_prompt(self.processor, req.messages)
            t0 = time.perf_counter()
            enc = self.processor(images=[images[ri] for ri, _ in chunk], text=[prompts[ri] for ri, _ in chunk],
                                 return_tensors="pt", padding=True)
            enc = enc.to(self.model.device)
            kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=False, top_p=None, temperature=None,
                          top_k=None, eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
            if params.temperature > 0:
                gens = [torch.Generator().manual_seed(requests[ri].seeds[si]) for ri, si in chunk]
                kwargs["logits_processor"] = LogitsProcessorList(
                    [PerRowSampler(gens, params.temperature, params.top_p)])
            if params.stop:
                kwargs.update(stop_strings=list(params.stop), tokenizer=self.processor.tokenizer)
            out = self.model.generate(**enc, **kwargs)  # [B, L_prompt + L_new]
            new = out[:, enc["input_ids"].shape[1]:].cpu()  # [B, L_new]
            dt = (time.perf_counter() - t0) / len(chunk)
            prompt_lens = enc["attention_mask"].sum(1).tolist()
            for b, (ri, si) in enumerate(chunk):
                ids = new[b].tolist()
                stop = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
                finished = stop is not None
                if finished:
                    ids = ids[:stop]
                ids = [t for t in ids if t != self.pad_id]
                text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
                text, stopped = cut_at_stop(text, params.stop)
                finished = finished or stopped
                text = text.strip()
                results[ri][si] = Completion(text, finished, int(prompt_lens[b]), len(ids), dt, tuple(ids))
            bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop string (excluded), and whether one was found."""
    cut = min((i for i in (text.find(st) for st in stop if st) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
