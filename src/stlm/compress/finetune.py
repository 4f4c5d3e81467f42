"""Short recovery fine-tuning after compression (as LLM-Pruner's LoRA recovery and ShortGPT's
healing, here full-parameter): AdamW on the run's own training text and the model's own training
loss, at the run's final learning rate by default, keeping pruned weights at zero where the
method asks for it."""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

FINETUNE_SEED_OFFSET = 7919  # batches distinct from training's and calibration's


def finetune(model: nn.Module, batches, steps: int, lr: float, keep_zeros: bool,
             log: Callable[[str], None] = print) -> dict[str, float]:
    """`steps` AdamW steps on `batches` (a `TokenBatches`); returns the first and last losses and
    the seconds it took."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    masks = [(p, p != 0) for p in params if p.dim() >= 2] if keep_zeros else []
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    started = time.perf_counter()
    model.train()
    try:
        for step in range(steps):
            loss = model(**batches.batch(step).to(device).model_inputs()).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                for p, mask in masks:
                    p.mul_(mask)
            losses.append(loss.detach().item())
            if step == 0 or (step + 1) % max(1, steps // 5) == 0:
                log(f"fine-tune step {step + 1}/{steps}: loss {losses[-1]:.4f}")
    finally:
        model.eval()
    return {"first_loss": losses[0], "last_loss": losses[-1], "seconds": time.perf_counter() - started}
