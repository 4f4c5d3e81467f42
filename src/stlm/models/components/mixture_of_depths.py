"""Mixture-of-depths (Raposo et al., 2024, "Mixture-of-Depths: Dynamically allocating compute in
transformer-based language models", arXiv 2404.02258).

A routed block processes only a fraction of the tokens (its capacity c); the others go around it
along the residual stream, so the block's FLOPs (projections, FFN, and attention, which sees only
the routed tokens) fall to about c of a dense block's for matmuls and c^2 for attention scores.

- **Router**: a linear map d_model -> 1 of the block's input gives each token a logit r. The block
  output of a routed token is x + sigmoid(r) * (block(x) - x), which puts the router on the
  gradient path of the language-model loss (the paper multiplies by r itself; sigmoid keeps the
  scale in (0, 1) for small models). Unrouted tokens keep x.
- **Training** (`model.training` and no KV cache): each row routes its top k = ceil(c * T) tokens
  by r, as in the paper. The routed tokens keep their original positions (rotary tables and
  absolute positions come from those) and their original order, so the block's causal attention
  runs among routed tokens only, none attending to a later one. Top-k over the sequence is not
  causal (a token's routing depends on later tokens' logits), which is why inference decides
  differently:
- **Inference** (eval mode: validation, scoring, generation, KV-cache decoding) decides per token,
  causally: with `router=aux_loss` a token is routed when r > 0, r being trained by an auxiliary
  binary cross-entropy towards the top-k choice (the targets carry no gradient; the loss reaches
  the router and, as in the paper, the residual stream); with `router=predictor` a small MLP
  (d_model -> d_model/4 -> 1, SiLU) on stop-gradient block inputs is trained by that BCE and
  routes a token when its logit > 0 (the paper's second method). The losses are reported as
  `aux.mod_<layer>` and weighted by `model.mod.aux_weight`. The fraction routed at inference
  follows what the router learned, so it matches the capacity only approximately.
- **KV cache**: a routed layer caches keys and values of its routed tokens only, and records each
  slot's absolute position (rows of a batch route different numbers of tokens: shorter rows are
  padded with slots attention masks out; `KVCache.past_mask`). Decoding token by token therefore
  equals the eval-mode forward over the whole sequence (tested zoo-wide).
- **Capacity 1.0** builds the ordinary block (no router, no parameters added): the model is the
  dense model, weight for weight.

Which blocks route: `model.mod.every` (layers every-1, 2*every-1, ...; the paper routes every
other block) at `model.mod.capacity`, or one capacity per layer in `model.mod.per_layer`.
FLOPs are counted by `stlm.models.params.count_flops` from the computation performed (a routed
block's linear layers see only its k tokens), in training mode, i.e. at exactly the capacity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.core import Block
from stlm.models.kv_cache import KVCache


def layer_capacities(cfg: ModelConfig) -> list[float]:
    """The capacity of every layer (1.0: a dense block)."""
    mod = cfg.mod
    if mod.per_layer:
        if len(mod.per_layer) != cfg.n_layers:
            raise ValueError(f"model.mod.per_layer needs one capacity per layer ({cfg.n_layers}), "
                             f"got {len(mod.per_layer)}")
        return [float(c) for c in mod.per_layer]
    return [mod.capacity if i % mod.every == mod.every - 1 else 1.0 for i in range(cfg.n_layers)]


def build_blocks(cfg: ModelConfig, attns: list[nn.Module], ffns: list[nn.Module]) -> list[Block]:
    """One block per layer: a routed block where the layer's capacity is below 1, else a plain one."""
    return [RoutedBlock(cfg, a, f, c) if c < 1.0 else Block(cfg, a, f)
            for a, f, c in zip(attns, ffns, layer_capacities(cfg))]


class RoutePredictor(nn.Module):
    """The paper's auxiliary MLP: predicts from stop-gradient states whether a token is routed."""

    param_category = "router"

    def __init__(self, d_model: int):
        super().__init__()
        hidden = max(d_model // 4, 1)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.up(x.detach()))).squeeze(-1)


class RoutedBlock(Block):
    """A pre-norm block that processes the tokens its router picks; the rest skip it."""

    def __init__(self, cfg: ModelConfig, attn: nn.Module, ffn: nn.Module, capacity: float):
        super().__init__(cfg, attn, ffn)
        if not 0.0 < capacity < 1.0:
            raise ValueError(f"a routed block needs a capacity in (0, 1), got {capacity}")
        self.capacity = capacity
        self.aux_weight = cfg.mod.aux_weight
        self.router = nn.Linear(cfg.d_model, 1, bias=False)
        self.router.param_category = "router"
        self.predictor = RoutePredictor(cfg.d_model) if cfg.mod.router == "predictor" else None

    def forward(self, x: torch.Tensor, rope, cache: KVCache | None, layer_idx: int,
                positions: torch.Tensor | None = None, aux: dict | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        logits = self.router(x).squeeze(-1)  # (B, T)
        if self.training and cache is None:  # the paper's top-k over the sequence
            k = min(t, math.ceil(self.capacity * t))
            index = logits.topk(k, dim=1).indices.sort(dim=1).values
            chosen = torch.zeros_like(logits, dtype=torch.bool).scatter(1, index, True)
            if aux is not None:
                guess = logits if self.predictor is None else self.predictor(x)
                aux[f"mod_{layer_idx}"] = (F.binary_cross_entropy_with_logits(guess, chosen.float()),
                                           self.aux_weight)
            real = torch.ones_like(index, dtype=torch.bool)
        else:  # causal: each token's own decision; rows are padded to the longest row's count
            chosen = self.routes(x, logits)
            k = int(chosen.sum(dim=1).max())
            if k == 0:
                return x
            index = (~chosen).to(torch.uint8).argsort(dim=1, stable=True)[:, :k]  # routed first, in order
            real = chosen.gather(1, index)
        return self._run_routed(x, logits, index, real, rope, cache, layer_idx, positions)

    def routes(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The causal (inference) decision for block inputs x (B, T, d_model): (B, T) bool."""
        if self.predictor is not None:
            return self.predictor(x) > 0
        return (self.router(x).squeeze(-1) if logits is None else logits) > 0

    def _run_routed(self, x, logits, index, real, rope, cache, layer_idx, positions) -> torch.Tensor:
        """The block on the tokens at `index` (B, k) (`real`: False for padding slots), each at
        its own position; returns x with those tokens' outputs written back."""
        d = x.shape[-1]
        gather_index = index.unsqueeze(-1).expand(-1, -1, d)
        xs = x.gather(1, gather_index)
        if rope is not None:  # (T, head_dim) tables -> (B, 1, k, head_dim), one row per token
            rope = tuple(table[index].unsqueeze(1) for table in rope)
        ys = super().forward(xs, rope, cache, layer_idx)
        if cache is not None:
            if positions is None:
                raise ValueError("a routed block needs the tokens' positions to cache them")
            cache.record_positions(layer_idx, torch.where(real, positions.to(index.device)[index], -1))
        weight = torch.sigmoid(logits.gather(1, index)).unsqueeze(-1).to(xs.dtype)
        ys = torch.where(real.unsqueeze(-1), xs + weight * (ys - xs), xs)
        return x.scatter(1, gather_index, ys)


@torch.no_grad()
def routed_fractions(model: nn.Module, ids: torch.Tensor) -> dict[int, float]:
    """{layer: fraction of the tokens of ids (B, T) its routed block processes at inference}
    (eval-mode decisions, which follow what the router learned rather than the capacity)."""
    was_training = model.training
    model.eval()
    try:
        states = model(ids, output_hidden_states=True, logits="none").hidden_states
    finally:
        model.train(was_training)
    return {i: float(block.routes(states[i]).float().mean())
            for i, block in enumerate(model.core.blocks) if isinstance(block, RoutedBlock)}
