"""Setting the dropout rate of a built model, for dropout schedules (Liu et al., 2023, "Dropout
Reduces Underfitting", arXiv 2303.01500).

Every dropout of the model follows one rate: the `nn.Dropout` modules (embedding, residual and
FFN outputs) and the attention-probability dropout that attention modules pass to
`scaled_dot_product_attention` as their float attribute `dropout`.
"""

from __future__ import annotations

from torch import nn


def _attention_dropout_owners(model: nn.Module):
    return (m for m in model.modules() if not isinstance(m, nn.Dropout)
            and isinstance(getattr(m, "dropout", None), float))


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout of `model` to rate `p` (train mode still decides whether it applies)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {p}")
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    for module in _attention_dropout_owners(model):
        module.dropout = float(p)


def dropout_rates(model: nn.Module) -> set[float]:
    """The distinct dropout rates in `model` (one value after `set_dropout`)."""
    rates = {float(m.p) for m in model.modules() if isinstance(m, nn.Dropout)}
    return rates | {m.dropout for m in _attention_dropout_owners(model)}
