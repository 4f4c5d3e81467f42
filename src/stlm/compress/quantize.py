"""Weight-only quantisation: `int8` (one scale per output channel) and `int4` (one scale per
`--group-size` input columns, two codes per byte), both symmetric round-to-nearest, of the
blocks' linear layers and the LM head (unless tied to the embedding, which stays float). The
checkpoint stores the integer codes and float scales (`stlm.compress.layers.QuantLinear`); the
float weight is rebuilt in each forward pass. Why not torchao: docs/compression.md.
"""

from __future__ import annotations

import torch

from stlm.compress.layers import QuantLinear
from stlm.compress.registry import Context, register
from stlm.compress.structure import replace
from stlm.compress.targets import replaceable_linears
from stlm.errors import UserError


@torch.no_grad()
def quantize_model(ctx: Context, bits: int, group: int) -> dict:
    c = ctx.cfg.model.compression
    if c.quantized:
        raise UserError(f"this run is already quantised (int{c.quant_bits}); quantise the original instead")
    layers = replaceable_linears(ctx.model, head=True)
    if bits == 4:
        bad = [(n, lin.in_features) for n, lin in layers if lin.in_features % group]
        if bad:
            raise UserError(f"--group-size {group} must divide the input width of every quantised layer; "
                            f"{bad[0][0]} has {bad[0][1]}")
    for name, lin in layers:
        replace(ctx.model, name, QuantLinear.from_linear(lin, bits, group))
    c.quant_bits, c.quant_group, c.quantized = bits, group if bits == 4 else 0, [n for n, _ in layers]
    return {"bits": bits, **({"group_size": group} if bits == 4 else {}), "layers": len(layers)}


@register("int8", "weight-only int8, one scale per output channel", trainable=False)
def int8(ctx: Context) -> dict:
    return quantize_model(ctx, 8, 0)


@register("int4", "weight-only int4 in groups of --group-size input columns, packed two per byte",
          ("group_size",), trainable=False)
def int4(ctx: Context) -> dict:
    return quantize_model(ctx, 4, ctx.options["group_size"])
