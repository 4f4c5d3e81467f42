"""Parameter accounting and FLOPs per token, by component kind.

Each parameter is counted under the `param_category` of the innermost module that declares one
(registering a component gives it its kind's category: embedding, attention, mlp, norms, head;
a component may set its own, as absolute positions do). A tensor shared by several modules
(tied embedding and head, layers sharing a block) is counted once, at its first owner.

FLOPs are counted from the computation actually performed, not from the config: one forward
pass of a training batch runs with hooks that add, for every call of an `nn.Linear`, its weight
size times the rows it processed, and for modules that multiply by a parameter outside an
`nn.Linear` (`extra_matmul_params`) that number likewise. Training FLOPs are 6 per matmul
parameter use per token (forward and backward; nanoGPT and PaLM, Chowdhery et al., 2022,
appendix B) plus 12 * d_attn * context per attention call for the scores, the context scaled by
the share of the batch's positions the call sees (a mixture-of-depths block attends among its
routed tokens only). A block applied in several layers counts once per use; embedding lookups
count nothing. The pass runs in training mode (so routed blocks process exactly their capacity)
with torch's random state restored afterwards. A new component is counted right without editing
this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

COMPONENTS = ("embedding", "positions", "attention", "mlp", "norms", "head")
EMBEDDING_CATEGORIES = ("embedding", "positions")


def categories(model: nn.Module) -> dict[str, str]:
    """The accounting category of every parameter name (first owner of shared tensors)."""
    declared = {name: getattr(m, "param_category", None) for name, m in model.named_modules()}
    out = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        owners = (".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1))  # innermost first
        out[name] = next((declared[o] for o in owners if declared.get(o)), "other")
    return out


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


def count_parameters(model: nn.Module, flops: bool = True) -> ParamReport:
    report = ParamReport(by_component={c: 0 for c in COMPONENTS})
    params = dict(model.named_parameters())
    for name, category in categories(model).items():
        n = params[name].numel()
        report.by_component[category] = report.by_component.get(category, 0) + n
        report.total += n
    report.embedding = sum(report.by_component.get(c, 0) for c in EMBEDDING_CATEGORIES)
    if flops:
        report.matmul_params_per_token, report.flops_per_token = count_flops(model)
    return report


class FlopCounter:
    """Counts, while active (`with FlopCounter(model, context) as c:`), the matmul parameter uses
    of every `nn.Linear` call and `extra_matmul_params` module, and the attention-score work of
    every attention call costed at `context` keys (default: the model's context length), for any
    computation the model performs: a training batch, a scoring pass, an early exit, a decode.
    With `tokens`, the length of the sequences being run, an attention call over fewer positions
    (a routed block sees only its routed tokens as keys) is costed at that share of `context`."""

    def __init__(self, model: nn.Module, context: int | None = None, tokens: int | None = None):
        self.model, self.context, self.tokens = model, context or model.cfg.context_length, tokens
        self.matmul_uses = 0  # parameter uses in matmuls, summed over rows
        self.attention_uses = 0.0  # n_heads * head_dim * attended keys, summed over attention rows
        self._hooks: list = []

    def _count(self, module: nn.Module, args, _output) -> None:
        rows = args[0].shape[:-1].numel() if args and torch.is_tensor(args[0]) else 0
        if isinstance(module, nn.Linear):
            self.matmul_uses += module.weight.numel() * rows
        self.matmul_uses += getattr(module, "extra_matmul_params", 0) * rows
        if getattr(module, "component_kind", None) == "attention":
            seen = args[0].shape[-2] / self.tokens if self.tokens else 1.0  # 1 unless some positions only
            self.attention_uses += module.n_heads * module.head_dim * self.context * seen * rows

    def __enter__(self) -> "FlopCounter":
        self._hooks = [m.register_forward_hook(self._count) for m in self.model.modules()
                       if isinstance(m, nn.Linear) or hasattr(m, "extra_matmul_params")
                       or getattr(m, "component_kind", None) == "attention"]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    @property
    def inference_flops(self) -> int:
        """Forward FLOPs: 2 per matmul parameter use, 4 * d_attn * keys per attention row
        (scores and the weighted sum of values)."""
        return 2 * self.matmul_uses + round(4 * self.attention_uses)

    @property
    def training_flops(self) -> int:
        """Forward and backward: three times the forward (6 per parameter use, 12 per attention)."""
        return 6 * self.matmul_uses + round(12 * self.attention_uses)


@torch.no_grad()
def count_flops(model: nn.Module, context: int | None = None, tokens: int = 16) -> tuple[int, int]:
    """(matmul parameter uses per token, training FLOPs per token) measured on one forward pass
    of a training batch of `tokens` positions, in training mode (a routed block then runs exactly
    its capacity; the RNG is restored afterwards), with attention scores costed at `context`
    (default: the model's context length)."""
    tokens = min(tokens, model.cfg.context_length)
    was_training = model.training
    device = next(model.parameters()).device
    model.train()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            ids = torch.zeros(1, tokens, dtype=torch.long, device=device)
            with FlopCounter(model, context, tokens) as counter:
                model(ids, ids)  # with targets: the heads' training computation counts too
    finally:
        model.train(was_training)
    per_token = counter.matmul_uses // tokens
    return per_token, 6 * per_token + round(12 * counter.attention_uses) // tokens
