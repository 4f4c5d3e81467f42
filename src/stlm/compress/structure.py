"""Rebuild a compressed model from its config: the transform `load_run` applies after building
the model and before loading the weights.

`model.compression` (`stlm.config.schema.CompressionConfig`) says, per layer, how many attention
heads and FFN neurons remain, which linear layers are factorised (and at what rank) and which are
stored quantised. `apply_structure` swaps in modules of exactly those shapes; the checkpoint's
tensors then load with the ordinary strict loader. Layer dropping needs nothing here: it lowers
`model.n_layers`.
"""

from __future__ import annotations

from torch import nn

from stlm.compress.layers import LowRankLinear, QuantLinear
from stlm.config.schema import CompressionConfig, ModelConfig
from stlm.models.components.attention import GroupedQueryAttention
from stlm.models.components.mlp import GeluMLP, SwiGLU

FFN_TYPES = (SwiGLU, GeluMLP)
FFN_IN = ("gate_proj", "up_proj")  # d_model -> d_ff (SwiGLU has both, the GELU MLP only up_proj)


def linear(in_features: int, out_features: int, like: nn.Linear) -> nn.Linear:
    """A fresh nn.Linear of the given shape with `like`'s bias setting, device and dtype."""
    w = like.weight
    return nn.Linear(in_features, out_features, bias=like.bias is not None, device=w.device, dtype=w.dtype)


def set_attention_heads(attn: GroupedQueryAttention, n_heads: int, n_kv_heads: int) -> None:
    """Give `attn` projections for `n_heads` query and `n_kv_heads` key/value heads (head size
    and d_model unchanged); weights are left for the caller or the checkpoint to fill."""
    d, hd = attn.q_proj.in_features, attn.head_dim
    attn.q_proj = linear(d, n_heads * hd, attn.q_proj)
    attn.k_proj = linear(d, n_kv_heads * hd, attn.k_proj)
    attn.v_proj = linear(d, n_kv_heads * hd, attn.v_proj)
    attn.o_proj = linear(n_heads * hd, d, attn.o_proj)
    attn.n_heads, attn.n_kv_heads = n_heads, n_kv_heads


def set_ffn_width(ffn: nn.Module, width: int) -> None:
    """Give an FFN `width` hidden neurons (weights to be filled)."""
    d = ffn.down_proj.out_features
    for name in FFN_IN:
        if hasattr(ffn, name):
            setattr(ffn, name, linear(d, width, getattr(ffn, name)))
    ffn.down_proj = linear(width, d, ffn.down_proj)


def replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def linear_at(model: nn.Module, name: str) -> nn.Linear:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Linear):
        raise ValueError(f"model.compression names '{name}', which is not a linear layer of this model")
    return module


def check_compression(cfg: ModelConfig) -> None:
    """Refuse a compression section that cannot describe this model."""
    c = cfg.compression
    for key in ("heads", "kv_heads", "d_ff"):
        values = getattr(c, key)
        if values and len(values) != cfg.n_layers:
            raise ValueError(f"model.compression.{key} has {len(values)} entries for {cfg.n_layers} layers")
        if any(v < 1 for v in values):
            raise ValueError(f"model.compression.{key} must be >= 1 in every layer, got {values}")
    if bool(c.heads) != bool(c.kv_heads):
        raise ValueError("model.compression.heads and kv_heads come together (both or neither)")
    if any(h % kv for h, kv in zip(c.heads, c.kv_heads)):
        raise ValueError("model.compression.heads must divide by kv_heads in every layer")
    if c.quant_bits not in (0, 4, 8) or bool(c.quant_bits) != bool(c.quantized):
        raise ValueError(f"model.compression.quant_bits must be 8 or 4 with a list of quantized layers "
                         f"(or 0 with none), got {c.quant_bits}")
    if (c.heads or c.d_ff) and (cfg.sharing.layers != "none" or cfg.sharing.ffn != "none"):
        raise ValueError("per-layer heads or FFN widths need a model without weight sharing")


def apply_structure(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Make `model` (just built from `cfg`) the shape its `compression` section describes."""
    check_compression(cfg)
    c = cfg.compression
    for i, block in enumerate(model.core.blocks):
        if c.heads:
            if not isinstance(block.attn, GroupedQueryAttention):
                raise ValueError(f"per-layer heads need attention=gqa, not '{cfg.attention}'")
            set_attention_heads(block.attn, c.heads[i], c.kv_heads[i])
        if c.d_ff:
            if not isinstance(block.ffn, FFN_TYPES):
                raise ValueError(f"per-layer FFN widths need ffn=swiglu or gelu, not '{cfg.ffn}'")
            set_ffn_width(block.ffn, c.d_ff[i])
    for name, rank in c.low_rank.items():
        old = linear_at(model, name)
        w = old.weight
        replace(model, name, LowRankLinear(old.in_features, old.out_features, rank, old.bias is not None)
                .to(device=w.device, dtype=w.dtype))
    for name in c.quantized:
        old = linear_at(model, name)
        replace(model, name, QuantLinear(old.in_features, old.out_features, c.quant_bits, c.quant_group,
                                         old.bias is not None).to(old.weight.device))
    return model
