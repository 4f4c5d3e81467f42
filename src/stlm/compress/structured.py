"""Structured pruning: remove whole attention heads or FFN neurons, shrinking the matrices.

Importance comes from calibration text, as in the data-aware pruning of LLM-Pruner (Ma et al.,
2023, arXiv 2305.11627) and Wanda (Sun et al., 2023, arXiv 2306.11695), here in its simplest
form: the mean size of what a unit writes into the residual stream.
- a head h: mean over tokens of || W_o[:, h] y_h ||, its output through its slice of the output
  projection (Michel et al., 2019, arXiv 1905.10650, showed many heads can go); under grouped-
  query attention a key/value head and its query heads are removed together;
- a neuron j: mean |a_j| times || W_down[:, j] ||, with a the FFN's hidden activation.
Each layer loses the same fraction (`--fraction`) of its lowest-scoring units, at least one unit
stays; `model.compression.heads`/`kv_heads`/`d_ff` record what remains per layer.
"""

from __future__ import annotations

import torch
from torch import nn

from stlm.compress.calibrate import hooks, run_calibration
from stlm.compress.registry import Context, register
from stlm.compress.structure import FFN_IN, FFN_TYPES, linear, set_attention_heads, set_ffn_width
from stlm.compress.targets import refuse_sharing
from stlm.errors import UserError
from stlm.models.components.attention import GroupedQueryAttention


def sliced(lin: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A copy of `lin` keeping the given output rows and/or input columns."""
    w = lin.weight.detach()
    w = w if rows is None else w[rows]
    w = w if cols is None else w[:, cols]
    new = linear(w.shape[1], w.shape[0], lin)
    new.weight.data.copy_(w)
    if lin.bias is not None:
        new.bias.data.copy_(lin.bias.detach() if rows is None else lin.bias.detach()[rows])
    return new


def _removed(units: int, fraction: float, what: str) -> int:
    k = min(round(fraction * units), units - 1)
    if k == 0:
        raise UserError(f"--fraction {fraction} removes no {what} of {units}; raise it")
    return k


def _kept(scores: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Indices of all but the `n_remove` lowest scores, in their original order."""
    return torch.sort(torch.argsort(scores, descending=True)[: len(scores) - n_remove]).values


def _spans(units: torch.Tensor, width: int) -> torch.Tensor:
    """The indices covered by each unit i, [i * width, (i + 1) * width), in order."""
    return (units[:, None] * width + torch.arange(width)).flatten()


def _blocks(ctx: Context, kind: type | tuple, attr: str, method: str) -> list[nn.Module]:
    refuse_sharing(ctx.model, method)
    modules = [getattr(b, attr) for b in ctx.model.core.blocks]
    if not all(isinstance(m, kind) for m in modules):
        need = "attention=gqa" if attr == "attn" else "ffn=swiglu or gelu"
        raise UserError(f"--method {method} needs model.{need}, this model has {type(modules[0]).__name__}")
    if ctx.cfg.model.compression.low_rank:
        raise UserError(f"--method {method} needs plain linear layers; this run is factorised (svd): "
                        f"remove {method} before factorising")
    return modules


@register("heads", "remove each layer's least important attention heads (--fraction)", ("fraction",),
          calibrates=True)
@torch.no_grad()
def heads(ctx: Context) -> dict:
    attns = _blocks(ctx, GroupedQueryAttention, "attn", "heads")
    fraction = ctx.options["fraction"]
    removed = [_removed(a.n_kv_heads, fraction, "head group") for a in attns]
    scores = [torch.zeros(a.n_heads, dtype=torch.float64) for a in attns]

    def collect(i: int, attn: GroupedQueryAttention):
        def hook(module, args):
            y = args[0]  # (B, T, heads * head_dim), the merged heads before o_proj
            b, t, _ = y.shape
            y = y.view(b, t, attn.n_heads, attn.head_dim)
            w = module.weight.view(module.out_features, attn.n_heads, attn.head_dim)
            out = torch.einsum("bthd,ohd->btho", y, w)  # each head's write into the residual
            scores[i] += out.norm(dim=-1).mean(dim=(0, 1)).double().cpu()
        return hook

    with hooks([(a.o_proj, collect(i, a)) for i, a in enumerate(attns)], pre=True):
        run_calibration(ctx.model, ctx.calibration())
    kept_q, kept_kv, removed_groups = [], [], []
    for attn, s, k in zip(attns, scores, removed):
        rep = attn.n_heads // attn.n_kv_heads
        groups = _kept(s.view(attn.n_kv_heads, rep).sum(1), k)
        heads_kept = _spans(groups, rep)
        q_dims, kv_dims = _spans(heads_kept, attn.head_dim), _spans(groups, attn.head_dim)
        q, o = sliced(attn.q_proj, rows=q_dims), sliced(attn.o_proj, cols=q_dims)
        k_, v = sliced(attn.k_proj, rows=kv_dims), sliced(attn.v_proj, rows=kv_dims)
        removed_groups.append(sorted(set(range(attn.n_kv_heads)) - set(groups.tolist())))
        set_attention_heads(attn, len(heads_kept), len(groups))
        attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj = q, k_, v, o
        kept_q.append(attn.n_heads)
        kept_kv.append(attn.n_kv_heads)
    c = ctx.cfg.model.compression
    c.heads, c.kv_heads = kept_q, kept_kv
    return {"fraction": fraction, "removed_kv_groups": removed_groups}


@register("neurons", "remove each layer's least important FFN neurons (--fraction)", ("fraction",),
          calibrates=True)
@torch.no_grad()
def neurons(ctx: Context) -> dict:
    ffns = _blocks(ctx, FFN_TYPES, "ffn", "neurons")
    fraction = ctx.options["fraction"]
    removed = [_removed(f.down_proj.in_features, fraction, "neuron") for f in ffns]
    act = [torch.zeros(f.down_proj.in_features, dtype=torch.float64) for f in ffns]
    tokens = [0]

    def collect(i: int):
        def hook(module, args):
            a = args[0].detach()
            act[i] += a.abs().reshape(-1, a.shape[-1]).sum(0).double().cpu()
            if i == 0:
                tokens[0] += a.shape[0] * a.shape[1]
        return hook

    with hooks([(f.down_proj, collect(i)) for i, f in enumerate(ffns)], pre=True):
        run_calibration(ctx.model, ctx.calibration())
    widths = []
    for ffn, a, k in zip(ffns, act, removed):
        score = a / tokens[0] * ffn.down_proj.weight.detach().norm(dim=0).double().cpu()
        keep = _kept(score, k)
        new_in = {name: sliced(getattr(ffn, name), rows=keep) for name in FFN_IN if hasattr(ffn, name)}
        down = sliced(ffn.down_proj, cols=keep)
        set_ffn_width(ffn, len(keep))
        for name, lin in new_in.items():
            setattr(ffn, name, lin)
        ffn.down_proj = down
        widths.append(len(keep))
    ctx.cfg.model.compression.d_ff = widths
    return {"fraction": fraction}
