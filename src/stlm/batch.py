"""The batch type: what the data loader produces and the model's loss consumes.

`targets[b, t]` is the token that follows `ids[b, t]` (already shifted; nothing downstream
shifts again). `loss_mask` (bool, same shape) marks the positions that count in the loss (None:
all, except targets equal to `IGNORE_INDEX`). `extras` carries named tensors for models that
need more than ids (byte tensors, chunk boundaries, explicit positions); the model receives them
as keyword arguments of `forward`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE_INDEX = -100  # a target that is never scored (padding)


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64
    loss_mask: torch.Tensor | None = None  # (B, T) bool
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.ids), move(self.targets),
                     None if self.loss_mask is None else move(self.loss_mask),
                     {k: move(v) for k, v in self.extras.items()})

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for `model(**batch.model_inputs())`."""
        out = {"ids": self.ids, "targets": self.targets, **self.extras}
        if self.loss_mask is not None:
            out["loss_mask"] = self.loss_mask
        return out
