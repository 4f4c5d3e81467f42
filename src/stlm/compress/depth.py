"""Layer dropping by block importance (ShortGPT, Men et al., 2024, arXiv 2403.03853).

A block's importance is BI = 1 - E[cos(x_in, x_out)], the mean over calibration tokens of one
minus the cosine similarity between the hidden state entering and leaving it: a block that barely
turns the residual stream does little. The `--layers` blocks of lowest BI are removed and the
model's `n_layers` lowered; per-layer entries of `model.compression` (and mixture-of-depths
capacities, pinned in `model.mod.per_layer`) follow the blocks they describe.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from stlm.compress.calibrate import hooks, run_calibration
from stlm.compress.registry import Context, register
from stlm.compress.targets import refuse_sharing
from stlm.errors import UserError
from stlm.models.components.mixture_of_depths import layer_capacities


@torch.no_grad()
def block_importance(ctx: Context) -> list[float]:
    """ShortGPT's BI of every block, on the calibration batches."""
    blocks = list(ctx.model.core.blocks)
    total = torch.zeros(len(blocks), dtype=torch.float64)

    def collect(i: int):
        def hook(module, args, output):
            cos = F.cosine_similarity(args[0].float(), output.float(), dim=-1)
            total[i] += (1 - cos).mean().double().cpu()
        return hook

    n = 0
    with hooks([(b, collect(i)) for i, b in enumerate(blocks)]):
        n = run_calibration(ctx.model, ctx.calibration())
    return (total / n).tolist()


def renumber(name: str, new_index: dict[int, int]) -> str | None:
    """`core.blocks.<old>.rest` -> `core.blocks.<new>.rest`; None when the block was dropped."""
    m = re.match(r"core\.blocks\.(\d+)\.(.*)", name)
    if m is None:
        return name
    new = new_index.get(int(m.group(1)))
    return None if new is None else f"core.blocks.{new}.{m.group(2)}"


@register("drop-layers", "remove the --layers blocks of lowest ShortGPT importance", ("layers",),
          calibrates=True)
def drop_layers(ctx: Context) -> dict:
    refuse_sharing(ctx.model, "drop-layers")
    n_layers, k = len(ctx.model.core.blocks), ctx.options["layers"]
    if not 1 <= k < n_layers:
        raise UserError(f"--layers must be in [1, {n_layers - 1}] for this {n_layers}-layer model, got {k}")
    bi = block_importance(ctx)
    dropped = sorted(sorted(range(n_layers), key=lambda i: bi[i])[:k])
    kept = [i for i in range(n_layers) if i not in dropped]
    ctx.model.core.blocks = nn.ModuleList([ctx.model.core.blocks[i] for i in kept])
    m = ctx.cfg.model
    capacities = layer_capacities(m)
    if any(c < 1.0 for c in capacities):  # mixture-of-depths: the kept blocks keep their routing
        m.mod.per_layer = [capacities[i] for i in kept]
    m.n_layers = len(kept)
    c = m.compression
    for key in ("heads", "kv_heads", "d_ff"):
        if getattr(c, key):
            setattr(c, key, [getattr(c, key)[i] for i in kept])
    new_index = {old: new for new, old in enumerate(kept)}
    c.low_rank = {renumber(n, new_index): r for n, r in c.low_rank.items() if renumber(n, new_index)}
    c.quantized = [renumber(n, new_index) for n in c.quantized if renumber(n, new_index)]
    ctx.log(f"block importance (1 - cos): {', '.join(f'{i}: {b:.4f}' for i, b in enumerate(bi))}; "
            f"dropping {dropped}")
    return {"layers": k, "dropped": dropped, "importance": [round(b, 6) for b in bi]}
