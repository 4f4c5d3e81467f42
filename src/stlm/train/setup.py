"""Everything that adapts a pure single-device model to the machine it trains on.

Device choice, mixed precision (bf16 autocast on GPU, float32 on CPU), torch.compile, seeding,
and data-parallel training under torchrun, one process per device, gloo on CPU and NCCL on GPU:
- `train.parallel=ddp` (PyTorch DDP, Li et al., 2020, arXiv 2006.15704): every rank holds the
  whole model; gradients are all-reduced once per optimizer step;
- `train.parallel=fsdp` (FSDP2, `torch.distributed.fsdp.fully_shard`; ZeRO-3, Rajbhandari et al.,
  2020, arXiv 1910.02054): parameters, gradients and optimizer state are sharded over the ranks,
  each block (or group of blocks that share weights) gathered for its forward and backward, the
  rest (embedder, head, tied weights) in the root unit; bf16 parameters and float32 gradient
  reduction on CUDA (`MixedPrecisionPolicy`).
The model itself never knows about any of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from dataclasses import dataclass
from typing import Callable
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
    owns_group: bool = False  # init_runtime started the process group (so close() ends it)

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

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's `text` on every rank, sent as UTF-8 bytes in tensors (no pickling)."""
        if not self.distributed:
            return text or ""
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        data = torch.tensor(list((text or "").encode("utf-8")), dtype=torch.uint8, device=device)
        length = torch.tensor([data.numel()], dtype=torch.int64, device=device)
        dist.broadcast(length, src=0)
        if not self.is_main:
            data = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
        if int(length.item()):
            dist.broadcast(data, src=0)
        return bytes(data.cpu().tolist()).decode("utf-8")

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when torchrun set WORLD_SIZE > 1
    (one already started by the caller is used as it is, and left running by `close`)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(resolve_device(cfg.device, "train.device"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world_size > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    owns = world_size > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return Runtime(device, torch.bfloat16 if precision == "bf16" else None, rank, world_size, owns)


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


# torch.compile costs about a minute of compiling on a GPU and saves a fifth or more of each step
# after it, so it pays on runs of several minutes: 1e17 training FLOPs is about 5 minutes of eager
# bf16 training at 300 TFLOP/s. Unmeasured on a GPU so far (benchmarks/gpu_check.sh measures it).
COMPILE_MIN_FLOPS = 1e17
COMPILE_MIN_MINUTES = 10.0


def should_compile(cfg: TrainConfig, device: torch.device, planned_tokens: int | None,
                   flops_per_token: Callable[[], float]) -> bool:
    """`train.compile` when set; otherwise on for CUDA when the run is long enough to repay the
    compile time (planned tokens x FLOPs per token, or a time budget of 10 minutes or more), and
    off on the CPU (where the first compile takes about a minute for a 1M-parameter model)."""
    if cfg.compile is not None:
        return cfg.compile
    if device.type != "cuda":
        return False
    if planned_tokens is not None:
        return planned_tokens * flops_per_token() >= COMPILE_MIN_FLOPS
    return cfg.max_minutes is not None and cfg.max_minutes >= COMPILE_MIN_MINUTES


def enable_compile_cache() -> None:
    """Keep Inductor's compiled graphs (its FX graph and autotuning caches) in the user's cache
    folder rather than /tmp, so a second run of the same model skips most of the compile."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "stlm", "inductor")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", default)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


def wrap_for_training(model: nn.Module, cfg: TrainConfig, rt: Runtime,
                      compiled: bool | None = None, loss_module: nn.Module | None = None) -> nn.Module:
    """The module the training step calls: `loss_module` (default: the model's own loss,
    `LossModule`), optionally compiled (`compiled`, default `train.compile`), DDP-wrapped. A model
    sharded by `shard_model` is returned as is (its blocks were compiled when it was sharded)."""
    step: nn.Module = loss_module or LossModule(model)
    if is_sharded(model):
        return step
    if compiled is None:
        compiled = bool(cfg.compile)
    if compiled:
        enable_compile_cache()
        step = torch.compile(step)
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        step = DistributedDataParallel(step, device_ids=ids)
    return step


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` was sharded by `shard_model` (its parameters are DTensor shards)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gathered(model: nn.Module):
    """Within it, a sharded model's root unit (embedder, head) is whole, so its methods other
    than forward (`logprobs`, used by evaluation) run; the blocks gather themselves as in
    training. Every rank must enter it. A model that is not sharded is unaffected."""
    if not is_sharded(model):
        yield model
        return
    model.unshard()
    try:
        yield model
    finally:
        model.reshard()


def shard_units(model: nn.Module) -> list[list[nn.Module]]:
    """The FSDP units below the root: the core's blocks, one unit each, except that blocks sharing
    a parameter (layer sharing, SLlama) form one unit together, and a block sharing a parameter
    with anything outside the blocks stays in the root unit. A model without `core.blocks` is one
    unit (the root)."""
    blocks = list(dict.fromkeys(getattr(getattr(model, "core", None), "blocks", [])))  # distinct objects
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    outside = {id(p) for n, p in model.named_parameters(remove_duplicate=False)
               if not n.startswith("core.blocks.")} & in_blocks
    parent = list(range(len(blocks)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for i, block in enumerate(blocks):
        for p in block.parameters():
            j = owner.setdefault(id(p), i)
            parent[root(i)] = root(j)
    groups: dict[int, list[nn.Module]] = {}
    for i, block in enumerate(blocks):
        groups.setdefault(root(i), []).append(block)
    return [g for g in groups.values() if not any(id(p) in outside for b in g for p in b.parameters())]


def shard_model(model: nn.Module, rt: Runtime, compiled: bool = False) -> nn.Module:
    """FSDP2 over the process group: `fully_shard` on each unit of `shard_units`, then on the
    root. On CUDA with bf16, parameters are gathered in bf16 and gradients reduced in float32;
    otherwise everything stays float32. With `compiled`, each block is compiled in place first
    (names, hence checkpoints, unchanged). Call before the optimizer is built: sharding replaces
    the parameters."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if rt.device.type == "cuda" and rt.autocast_dtype is torch.bfloat16:
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for unit in shard_units(model):
        if compiled:
            enable_compile_cache()
            for block in unit:
                block.compile()
        fully_shard(unit if len(unit) > 1 else unit[0], mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


class DeviceBatches:
    """Batches moved to the training device as they are drawn: on CUDA through pinned (page-locked)
    host memory with a non-blocking copy, so the transfer overlaps the queued GPU work; on the CPU
    unchanged. Wraps any source with `batch(index)` returning a tensor, or tuples, dicts and
    dataclasses (a `stlm.batch.Batch`) of them."""

    def __init__(self, source, device: torch.device):
        self.source, self.device = source, device

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def batch(self, index: int):
        return self.move(self.source.batch(index))

    def move(self, item):
        if self.device.type != "cuda":
            return item
        if isinstance(item, torch.Tensor):
            if item.device.type == "cpu":
                item = item.pin_memory()
            return item.to(self.device, non_blocking=True)
        if isinstance(item, (tuple, list)):
            return type(item)(self.move(x) for x in item)
        if isinstance(item, dict):
            return {k: self.move(v) for k, v in item.items()}
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return dataclasses.replace(item, **{f.name: self.move(getattr(item, f.name))
                                                for f in dataclasses.fields(item) if f.init})
        return item


def sync_context(step_module: nn.Module, last_micro_step: bool,
                 model: nn.Module | None = None) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP, `model` sharded) on all but the
    last micro-step of an accumulated step."""
    if model is not None and is_sharded(model):
        model.set_requires_gradient_sync(last_micro_step)
        return contextlib.nullcontext()
    if last_micro_step or not hasattr(step_module, "no_sync"):
        return contextlib.nullcontext()
    return step_module.no_sync()


def full_value(value: torch.Tensor) -> torch.Tensor:
    """A DTensor (a sharded model's gradient norm, say) as a plain tensor, others unchanged."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value

