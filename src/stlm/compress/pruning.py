"""Unstructured pruning: set individual weights of the blocks' linear layers to zero.

- `magnitude`: the smallest |w|, to an exact sparsity, ranked across all matrices (global) or
  within each (layer) (Han et al., 2015, arXiv 1506.02626; as a baseline for LLMs in Frantar &
  Alistarh, 2023, SparseGPT, arXiv 2301.00774).
- `nm`: semi-structured N:M sparsity, at most N non-zeros in every M consecutive weights along
  the input dimension, the pattern sparse tensor cores run (2:4; Mishra et al., 2021,
  arXiv 2104.08378).
Shapes stay the same, so the checkpoint keeps its size on disk (zeros are stored densely); the
gain is in what a sparse kernel could skip. Embeddings and the LM head are not pruned.
"""

from __future__ import annotations

import torch

from stlm.compress.registry import Context, register
from stlm.compress.targets import block_linears
from stlm.errors import UserError


def exact_zero_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A mask that is False at exactly the k lowest scores (ties broken by position)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[torch.argsort(scores.flatten(), stable=True)[:k]] = False
    return keep.view_as(scores)


@register("magnitude", "unstructured magnitude pruning to --sparsity, --scope global or layer",
          ("sparsity", "scope"), keeps_zeros=True)
@torch.no_grad()
def magnitude(ctx: Context) -> dict:
    s, scope = ctx.options["sparsity"], ctx.options["scope"]
    weights = [m.weight for _, m in block_linears(ctx.model)]
    if scope == "global":
        scores = torch.cat([w.detach().abs().flatten().cpu() for w in weights])
        keep = exact_zero_mask(scores, round(s * scores.numel())).split([w.numel() for w in weights])
        for w, k in zip(weights, keep):
            w.mul_(k.view_as(w).to(w.device))
    else:
        for w in weights:
            w.mul_(exact_zero_mask(w.detach().abs().cpu(), round(s * w.numel())).to(w.device))
    return {"sparsity": s, "scope": scope, "matrices": len(weights)}


@register("nm", "semi-structured N:M sparsity (default 2:4) along the input dimension", ("n", "m"),
          keeps_zeros=True)
@torch.no_grad()
def n_of_m(ctx: Context) -> dict:
    n, m = ctx.options["n"], ctx.options["m"]
    if n >= m:
        raise UserError(f"--n must be smaller than --m, got n={n}, m={m}")
    layers = block_linears(ctx.model)
    bad = [name for name, lin in layers if lin.in_features % m]
    if bad:
        raise UserError(f"--m {m} must divide the input width of every linear layer; it does not for "
                        f"{bad[0]} ({ctx.model.get_submodule(bad[0]).in_features})")
    for _, lin in layers:
        w = lin.weight
        groups = w.detach().abs().reshape(w.shape[0], -1, m)
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(2, groups.topk(n, dim=2).indices, True)
        w.mul_(keep.reshape(w.shape))
    return {"n": n, "m": m, "sparsity": 1 - n / m, "matrices": len(layers)}
