"""Per-layer LoRA adapters on shared weights (LoRA: Hu et al., 2021, arXiv 2106.09685; on
layer-tied models as in Relaxed Recursive Transformers, Bae et al., 2024, arXiv 2410.20672).

A layer that reuses a shared module sees every linear weight W of it as W + (alpha / r) B A with
its own A (r x in, Kaiming-uniform) and B (out x r, zeros). At initialisation B = 0, so each layer
computes exactly the shared function; training lets layers drift apart at r * (in + out)
parameters per weight. The update is merged into the weight for the call
(`torch.func.functional_call`), so it also reaches weights a module uses more than once or
transposed (SPMLP's down/up weight) and costs no extra matmul per token.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call


class LoRA(nn.Module):
    """The low-rank update (alpha / r) B A of one out x in weight."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # nn.Linear's init, as in PEFT
        self.scale = alpha / rank

    def delta(self) -> torch.Tensor:
        return self.scale * (self.B @ self.A)


class LoRAShared(nn.Module):
    """One layer's view of a shared module: the module's forward with this layer's adapters
    merged into its nn.Linear weights. The shared module is a child of every view (the same
    object), so its parameters stay one tensor, counted and saved once."""

    def __init__(self, shared: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.shared = shared
        self.param_category = getattr(shared, "param_category", None)  # adapters count with it
        self.targets: dict[str, str] = {}  # adapter key -> weight name inside `shared`
        adapters = {}
        for name, module in shared.named_modules():
            if isinstance(module, nn.Linear):
                key = name.replace(".", "__")
                self.targets[key] = f"{name}.weight"
                adapters[key] = LoRA(module.out_features, module.in_features, rank, alpha)
        self.adapters = nn.ModuleDict(adapters)

    def forward(self, *args, **kwargs):
        weights = dict(self.shared.named_parameters())
        merged = {w: weights[w] + self.adapters[k].delta() for k, w in self.targets.items()}
        return functional_call(self.shared, merged, args, kwargs)
