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

One optimizer holds both kinds of group (`"muon": True` or False), so checkpoints, learning-rate
schedules and DDP treat it as any other optimizer. Under DDP the gradients are already averaged
before `step()`, so every rank computes the same update.
"""

from __future__ import annotations

import math

import torch

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


class MuonAdamW(torch.optim.Optimizer):
    """Muon for groups with `muon=True` (2-D parameters only), AdamW for the others.

    Muon group options: lr, momentum, nesterov, ns_steps, weight_decay.
    AdamW group options: lr, betas, eps, weight_decay.
    """

    def __init__(self, param_groups: list[dict], lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, betas=betas,
                        eps=eps, weight_decay=weight_decay, muon=False)
        super().__init__(param_groups, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon groups take 2-D matrices only; give vectors and scalars to AdamW")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (self._muon if group["muon"] else self._adamw)(group)
        return loss

    def _muon(self, group: dict) -> None:
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
            update = newton_schulz(blend, group["ns_steps"])
            update *= math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
            p.mul_(1.0 - lr * wd)
            p.add_(update.to(p.dtype), alpha=-lr)

    def _adamw(self, group: dict) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(p.grad, 1.0 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
            denom = (v / (1.0 - beta2 ** t)).sqrt_().add_(eps)
            p.mul_(1.0 - lr * wd)
            p.addcdiv_(m, denom, value=-lr / (1.0 - beta1 ** t))
