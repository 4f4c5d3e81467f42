"""Low-rank factorisation: each linear layer W (out x in) of the blocks becomes B A by truncated
SVD, W = U S V^T ~ (U_r S_r^1/2)(S_r^1/2 V_r^T), the best rank-r approximation in Frobenius norm
(Eckart & Young, 1936). `--rank r` factorises every matrix at rank min(r, out, in); `--energy e`
picks per matrix the smallest r with sum_{i<r} s_i^2 >= e * sum s_i^2 and leaves a matrix dense
when r (in + out) >= in * out, where factorising would save nothing. At full rank the
factorisation reproduces the layer up to float rounding (the SVD runs in float64).
"""

from __future__ import annotations

import torch

from stlm.compress.layers import LowRankLinear
from stlm.compress.registry import Context, register
from stlm.compress.structure import replace
from stlm.compress.targets import replaceable_linears
from stlm.errors import UserError


def energy_rank(s: torch.Tensor, energy: float) -> int:
    cum = torch.cumsum(s.double() ** 2, 0)
    return int(torch.searchsorted(cum, energy * cum[-1] * (1 - 1e-12)).item()) + 1


@register("svd", "truncated-SVD factorisation of the blocks' linear layers (--rank or --energy)",
          ("rank", "energy"))
@torch.no_grad()
def svd(ctx: Context) -> dict:
    rank, energy = ctx.options["rank"], ctx.options["energy"]
    if (rank is None) == (energy is None):
        raise UserError("--method svd needs exactly one of --rank R or --energy E")
    layers = replaceable_linears(ctx.model, factors=False)
    if not layers:
        raise UserError("this model has no linear layers that --method svd can factorise")
    ranks = ctx.cfg.model.compression.low_rank
    for name, lin in layers:
        w = lin.weight.detach()
        u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
        r = min(rank, len(s)) if rank is not None else energy_rank(s, energy)
        if rank is None and r * (lin.in_features + lin.out_features) >= lin.in_features * lin.out_features:
            continue
        root = s[:r].sqrt()
        new = LowRankLinear(lin.in_features, lin.out_features, r, lin.bias is not None).to(w.device, w.dtype)
        new.b.weight.copy_(u[:, :r] * root)
        new.a.weight.copy_(root[:, None] * vh[:r])
        if lin.bias is not None:
            new.b.bias.copy_(lin.bias)
        replace(ctx.model, name, new)
        ranks[name] = r
    return {"rank": rank, "energy": energy, "factorised": len(ranks)}
