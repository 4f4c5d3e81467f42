"""Parameter accounting and FLOPs per token.

Parameters are grouped by component (embedding, positions, attention, MLP, norms, head). A tensor
shared by several modules (tied embedding and head, layers sharing a block) is counted once, at
its first owner. FLOPs follow nanoGPT/PaLM (Chowdhery et al., 2022, appendix B): 6 per matmul
parameter *use* per token for forward and backward, plus 12 * layers * d_attn * context for the
attention scores; a block applied in several layers counts once per layer, an embedding lookup
counts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

COMPONENTS = ("embedding", "positions", "attention", "mlp", "norms", "head")


def component_of(name: str, module_path_types: dict[str, type]) -> str:
    """Which component a parameter (by its qualified name) belongs to."""
    parts = name.split(".")
    owner_types = [module_path_types.get(".".join(parts[:i]), object) for i in range(len(parts))]
    if any("Norm" in t.__name__ for t in owner_types):
        return "norms"
    if parts[0] == "embedder":
        return "positions" if "positions" in parts else "embedding"
    if parts[0] == "head":
        return "head"
    if len(parts) > 3 and parts[0] == "core" and parts[1] == "blocks":
        return "attention" if parts[3] == "attn" else "mlp"
    return "other"


@dataclass
class ParamReport:
    by_component: dict[str, int] = field(default_factory=dict)
    total: int = 0
    embedding: int = 0  # input embedding + position tables
    flops_per_token: int = 0
    matmul_params_per_token: int = 0  # parameter uses per token in matmuls (for 6N)

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def count_parameters(model: nn.Module) -> ParamReport:
    types = {name: type(m) for name, m in model.named_modules()}
    report = ParamReport(by_component={c: 0 for c in COMPONENTS})
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        comp = component_of(name, types)
        report.by_component[comp] = report.by_component.get(comp, 0) + p.numel()
        report.total += p.numel()
    report.embedding = report.by_component["embedding"] + report.by_component["positions"]
    report.matmul_params_per_token, report.flops_per_token = _flops(model)
    return report


def _flops(model: nn.Module) -> tuple[int, int]:
    """Per-token matmul parameter uses and training FLOPs (forward + backward)."""
    cfg = model.cfg
    n = 0
    for block in model.core.blocks:  # each layer counts its (possibly shared) weights
        for sub in (block.attn, block.ffn):
            n += sum(m.weight.numel() for m in sub.modules() if isinstance(m, nn.Linear))
            n += getattr(sub, "extra_matmul_params", 0)
    n += model.head.linear.weight.numel()
    d_attn = cfg.n_heads * (cfg.d_model // cfg.n_heads)
    attention = 12 * cfg.n_layers * d_attn * cfg.context_length
    return n, 6 * n + attention
