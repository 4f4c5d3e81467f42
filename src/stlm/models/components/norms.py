"""Normalisation layers: RMSNorm (Zhang & Sennrich, 2019) and LayerNorm (Ba et al., 2016)."""

from __future__ import annotations

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.registry import lookup, register


@register("norm", "rmsnorm")
class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale, computed in float32 as Llama does."""

    def __init__(self, dim: int, eps: float = 1e-6, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


@register("norm", "layernorm")
class LayerNorm(nn.LayerNorm):
    """GPT-2 style LayerNorm; the bias follows `model.bias`."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False):
        super().__init__(dim, eps=eps, bias=bias)


def build_norm(cfg: ModelConfig, dim: int | None = None) -> nn.Module:
    return lookup("norm", cfg.norm)(dim or cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)
