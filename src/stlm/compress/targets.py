"""Which linear layers a method may touch.

Zeroing weights (pruning) works on any linear layer inside the transformer blocks. Replacing a
layer by another module (factorised, quantised) needs a parent that calls it as a module: the
grouped-query attention, the SwiGLU/GELU FFNs, the LM head and a factorised layer's two halves.
A module shared by several layers appears once, under its first name.
"""

from __future__ import annotations

from torch import nn

from stlm.compress.layers import LowRankLinear
from stlm.compress.structure import FFN_TYPES
from stlm.errors import UserError
from stlm.models.components.attention import GroupedQueryAttention
from stlm.models.components.heads import TokenHead

REPLACEABLE_PARENTS = (GroupedQueryAttention, *FFN_TYPES, LowRankLinear)


def block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every distinct nn.Linear inside the transformer blocks, by qualified name."""
    return [(f"core.{name}", m) for name, m in model.core.named_modules() if isinstance(m, nn.Linear)]


def replaceable_linears(model: nn.Module, head: bool = False,
                        factors: bool = True) -> list[tuple[str, nn.Linear]]:
    """Block linears whose parent calls them as modules (with `factors`, the halves of factorised
    layers too); with `head`, the token head's linear map unless its weight is the (tied) input
    embedding (other heads stay float)."""
    if model.cfg.sharing.lora_rank:
        raise UserError("this model has LoRA adapters on shared weights, which read the raw weight "
                        "tensors; factorising or quantising them is not supported")
    found = []
    for name, module in model.named_modules():
        if not name.startswith("core.") or isinstance(module, nn.Linear):
            continue
        if isinstance(module, REPLACEABLE_PARENTS) and (factors or not isinstance(module, LowRankLinear)):
            found += [(f"{name}.{child_name}", child) for child_name, child in module.named_children()
                      if isinstance(child, nn.Linear)]
    if head and isinstance(model.head, TokenHead) and not model.cfg.tie_embeddings:
        found.append(("head.linear", model.head.linear))
    return found


def refuse_sharing(model: nn.Module, method: str) -> None:
    s = model.cfg.sharing
    if s.layers != "none" or s.ffn != "none":
        raise UserError(f"--method {method} changes single layers, but this model shares weights "
                        f"across layers (model.sharing.layers={s.layers}, ffn={s.ffn})")
