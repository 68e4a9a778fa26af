"""SQ-LLaVA's prototype extractor (Sun et al., ECCV 2024, Sec. 3.3): soft clustering of the image
tokens before the projector.

K learned prototypes are refined by T rounds of soft EM over an image's N tokens (learned q/k/v
projections, LayerNorm on tokens and prototypes):
    E: a[k, n] = softmax_k(q(p_k) . k(x_n) / sqrt(D))      each token's soft assignment
    M: p_k     = sum_n a[k, n] v(x_n) / sum_n a[k, n]       each prototype, its tokens' mean
then each token takes a residual of its similarity-weighted prototypes:
    x_n <- x_n + g * sum_k softmax_k(k(x_n) . q(p_k) / sqrt(D)) p_k
with the per-channel gate g initialised to zero, so the model starts exactly as it was and a
pretrained projector's alignment is kept until the gate learns to open.

It hooks into the model as a forward pre-hook on the projector (LLaVA family first) and lives in
the model as the submodule `prototype_extractor`; checkpoints keep it beside the HF weights
(`prototype_extractor.safetensors`, `r3v_prototype.json`), and LoRA iterations train it as a peft
`modules_to_save` module, saved in the adapter. A run whose M_0 has no extractor (a shared seed
model, or no seed stage) gets a gate-0 one at each iteration's training; the adapter then records
its shape (`r3v_prototype.json`) so loading installs it before the adapter's weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

NAME = "prototype_extractor"
CONFIG_FILE = "r3v_prototype.json"
WEIGHTS_FILE = "prototype_extractor.safetensors"


class PrototypeExtractor(nn.Module):
    def __init__(self, dim: int, clusters: int, em_steps: int = 2):
        super().__init__()
        if clusters < 1 or em_steps < 1:
            raise ValueError(f"prototype extractor: clusters ({clusters}) and em_steps ({em_steps}) must be >= 1")
        self.dim, self.clusters, self.em_steps = dim, clusters, em_steps
        self.prototypes = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))
        self.norm_tokens = nn.LayerNorm(dim)
        self.norm_prototypes = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Parameter(torch.zeros(dim))

    def cluster(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prototypes [B, K, D], token keys [B, N, D]) after T EM rounds over tokens x [B, N, D]."""
        xn = self.norm_tokens(x)
        keys, values = self.k(xn), self.v(xn)  # [B, N, D]
        p = self.prototypes.to(x.dtype).expand(x.shape[0], -1, -1)  # [B, K, D]
        scale = self.dim ** -0.5
        for _ in range(self.em_steps):
            assign = (self.q(self.norm_prototypes(p)) @ keys.transpose(1, 2) * scale).softmax(dim=1)  # [B, K, N]
            p = (assign @ values) / (assign.sum(-1, keepdim=True) + 1e-6)  # [B, K, D]
        return p, keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, keys = self.cluster(x)
        sim = (keys @ self.q(self.norm_prototypes(p)).transpose(1, 2) * self.dim ** -0.5).softmax(-1)  # [B, N, K]
        return x + self.gate.to(x.dtype) * (sim @ p)


def _projector(model) -> nn.Module:
    inner = getattr(model, "model", model)
    projector = getattr(inner, "multi_modal_projector", None)
    if projector is None:
        raise ValueError(f"model.prototype: {type(model).__name__} has no `multi_modal_projector` "
                         "(the prototype extractor supports the LLaVA family)")
    return projector


def _hook(owner):
    def pre_hook(module, args):
        return (getattr(owner, NAME)(args[0]),) + tuple(args[1:])  # looked up at call time: peft may wrap it
    return pre_hook


def clusters_for(model, clusters: int, fraction: float) -> int:
    """K: `clusters`, or ceil(fraction x image tokens) when fraction > 0."""
    if fraction <= 0:
        return clusters
    vc = model.config.vision_config
    tokens = (vc.image_size // vc.patch_size) ** 2
    return max(1, math.ceil(fraction * tokens))


def install(model, clusters: int, em_steps: int = 2, seed: int = 0) -> PrototypeExtractor:
    """Add a fresh extractor (gate 0: outputs unchanged) in front of `model`'s projector."""
    if hasattr(model, NAME):
        raise ValueError(f"{type(model).__name__} already has a prototype extractor")
    projector = _projector(model)
    layer = getattr(model.config, "vision_feature_layer", -1)
    if not isinstance(layer, int):
        raise ValueError("model.prototype: vision_feature_layer lists several layers; not supported")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ext = PrototypeExtractor(model.config.vision_config.hidden_size, clusters, em_steps)
    param = next(projector.parameters())
    ext.to(device=param.device, dtype=param.dtype)
    setattr(model, NAME, ext)
    projector.register_forward_pre_hook(_hook(model))
    return ext


def save(model, folder: Path) -> None:
    """Write the model's extractor beside a checkpoint (no-op without one)."""
    from safetensors.torch import save_file

    ext = getattr(model, NAME, None)
    if ext is None:
        return
    save_file({k: v.detach().contiguous() for k, v in ext.state_dict().items()}, str(Path(folder) / WEIGHTS_FILE))
    write_config(model, folder)


def load(model, folder: Path) -> PrototypeExtractor | None:
    """Install the extractor saved with the checkpoint at `folder`, if it has one."""
    from safetensors.torch import load_file

    cfg_file = Path(folder) / CONFIG_FILE
    if not cfg_file.exists():
        return None
    cfg = json.loads(cfg_file.read_text())
    ext = install(model, cfg["clusters"], cfg["em_steps"])
    ext.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
    return ext


def ensure(model, clusters: int, em_steps: int, seed: int = 0) -> None:
    """Install a fresh extractor unless `model` already has one (a base model without it gets a
    gate-0 one, trained in the iterations' adapters)."""
    if not hasattr(model, NAME):
        install(model, clusters, em_steps, seed)


def for_adapter(model, adapter: str | Path) -> None:
    """Before loading `adapter`: give `model` the extractor the adapter trained (its weights are in
    the adapter, its shape in the adapter's r3v_prototype.json) when the base model has none."""
    cfg_file = Path(adapter) / CONFIG_FILE
    if cfg_file.exists() and not hasattr(model, NAME):
        cfg = json.loads(cfg_file.read_text())
        install(model, cfg["clusters"], cfg["em_steps"])


def lr_by_name(pc) -> tuple[tuple[str, float], ...]:
    """The trainer's per-parameter lr for the extractor (`model.prototype.lr`; none at 0)."""
    return ((NAME, pc.lr),) if pc.enabled and pc.lr > 0 else ()


def write_config(model, folder: str | Path) -> None:
    """Record the model's extractor shape in an adapter folder (its weights are in the adapter)."""
    ext = getattr(model, NAME, None)
    ext = getattr(ext, "original_module", ext)  # under peft, a ModulesToSaveWrapper
    if ext is not None:
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(
            {"dim": ext.dim, "clusters": ext.clusters, "em_steps": ext.em_steps}, indent=2))


def has_prototype(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).exists()
