"""Everything that adapts a pure single-device model to the machine it trains on.

Device choice, mixed precision (bf16 autocast on GPU, float32 on CPU), torch.compile, seeding,
and data-parallel training under torchrun (PyTorch DDP, Li et al., 2020,
arXiv 2006.15704): one process per device, gloo on CPU and NCCL on GPU, gradients all-reduced
once per optimizer step. The model itself never knows about any of it.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from stlm.config.schema import TrainConfig
from stlm.device import resolve_device
from stlm.errors import UserError


@dataclass
class Runtime:
    """Where and how this process trains: its device, precision and place in a DDP group."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain float32
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over all ranks (itself when not distributed)."""
        if self.distributed:
            value = value.detach().clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when torchrun set WORLD_SIZE > 1."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(resolve_device(cfg.device, "train.device"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return Runtime(device, torch.bfloat16 if precision == "bf16" else None, rank, world_size)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices); call before building the model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class LossModule(nn.Module):
    """The model's loss as a forward pass, so DDP and torch.compile see the whole step. Returns
    (training objective, next-token loss, auxiliary losses), the last two detached."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, targets: torch.Tensor, **inputs):
        out = self.model(ids, targets, **inputs)
        return out.loss, out.lm_loss.detach(), {k: v.detach() for k, v in out.aux_losses.items()}


def wrap_for_training(model: nn.Module, cfg: TrainConfig, rt: Runtime,
                      loss_module: nn.Module | None = None) -> nn.Module:
    """The module the training step calls: `loss_module` (default: the model's own loss,
    `LossModule`), optionally compiled, DDP-wrapped."""
    step: nn.Module = loss_module or LossModule(model)
    if cfg.compile:
        step = torch.compile(step)
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        step = DistributedDataParallel(step, device_ids=ids)
    return step


def sync_context(step_module: nn.Module, last_micro_step: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's gradient all-reduce on all but the last micro-step of an accumulated step."""
    if last_micro_step or not hasattr(step_module, "no_sync"):
        return contextlib.nullcontext()
    return step_module.no_sync()

