"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for the core's weight matrices
(Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks",
kellerjordan.github.io/posts/muon; the optimizer of the modded-nanogpt speed-run records), with
AdamW (Loshchilov & Hutter, 2017, arXiv 1711.05101) for everything else: embeddings, head, norms
and biases.

For a matrix parameter with gradient G, Muon keeps a momentum buffer M <- mu M + G, takes the
Nesterov blend G + mu M, and replaces it by an approximation of its orthogonal polar factor
U V^T (G = U S V^T): five steps of the quintic Newton-Schulz iteration
X <- a X + (b X X^T + c (X X^T)^2) X on X = G / ||G||_F, with coefficients (3.4445, -4.7750,
2.0315) chosen to push every singular value into roughly [0.7, 1.2] quickly rather than to
converge. The update is scaled by sqrt(max(1, rows / cols)) so that tall and wide matrices move by
the same per-entry amount, and applied with decoupled weight decay.

Under DDP the gradients are already averaged before `step()`, so every rank computes the same
update (each rank orthogonalises every matrix; the speed-run spreads that work over ranks, which
matters only at sizes beyond stlm's). Under FSDP each rank holds a slice of every matrix (a
DTensor): the Nesterov blend is gathered whole (`full_tensor`), every rank orthogonalises it, and
each keeps its own slice of the update, so the step equals the single-process one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stlm.config.schema import TrainConfig
from stlm.train.optim.base import OptimizerSet, adamw, decay_groups, register_optimizer

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximate orthogonal polar factor of the 2-D matrix `g` (computed in float32)."""
    a, b, c = NS_COEFFICIENTS
    x = g.float()
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


def _whole(t: torch.Tensor) -> torch.Tensor:
    """The full matrix of a sharded (DTensor) tensor; a plain tensor as is."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _like(full: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """`full` laid out as `p`: this rank's slice when `p` is a DTensor (every rank holds the same
    `full`, so nothing is sent)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(p, DTensor):
        return full
    return distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters. Group options: lr, momentum, nesterov, ns_steps, weight_decay."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon takes 2-D matrices only; give vectors and scalars to AdamW")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(p.grad)
                blend = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
                update = _like(newton_schulz(_whole(blend), group["ns_steps"]), p)
                update *= math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
                p.mul_(1.0 - lr * wd)
                p.add_(update.to(p.dtype), alpha=-lr)
        return loss


@register_optimizer("muon")
def build_muon(model: nn.Module, cfg: TrainConfig, device: torch.device) -> OptimizerSet:
    """Muon (`train.muon.*`) for the core's 2-D matrices; AdamW at `train.lr` for embeddings, the
    head, norms and biases (and any other vector or table outside the core)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # a tied tensor once
    matrices = [p for n, p in named if n.startswith("core.") and p.dim() == 2]
    in_muon = {id(p) for p in matrices}
    m = cfg.muon
    optimizers: list[torch.optim.Optimizer] = []
    if matrices:
        optimizers.append(Muon([{"params": matrices, "lr_scale": m.lr / cfg.lr}], lr=m.lr, momentum=m.momentum,
                               nesterov=m.nesterov, ns_steps=m.ns_steps, weight_decay=m.weight_decay))
    rest = [(n, p) for n, p in named if id(p) not in in_muon]
    optimizers.append(adamw(decay_groups(rest, cfg.weight_decay), cfg, device))
    return OptimizerSet(optimizers, model)
