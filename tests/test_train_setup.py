"""Setup policy: when torch.compile is on by default, and batches moved to the training device."""

import dataclasses

import pytest
import torch

from stlm.config.schema import TrainConfig
from stlm.train.setup import COMPILE_MIN_FLOPS, DeviceBatches, should_compile

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def one_gigaflop() -> float:  # FLOPs per token, computed only when the policy needs them
    return 1e9


def test_compile_default_is_on_for_long_cuda_runs_only():
    auto = TrainConfig()
    assert auto.compile is None
    long_run, short_run = int(COMPILE_MIN_FLOPS / 1e9) + 1, 1000
    assert should_compile(auto, CUDA, long_run, one_gigaflop)
    assert not should_compile(auto, CUDA, short_run, one_gigaflop)  # the main job: compiling would not pay
    assert not should_compile(auto, CPU, long_run, one_gigaflop)  # off on the CPU unless asked
    assert should_compile(TrainConfig(compile=True), CPU, short_run, one_gigaflop)
    assert not should_compile(TrainConfig(compile=False), CUDA, long_run, one_gigaflop)
    minutes = TrainConfig(max_steps=None, max_minutes=30)
    assert should_compile(minutes, CUDA, None, one_gigaflop)
    assert not should_compile(dataclasses.replace(minutes, max_minutes=2), CUDA, None, one_gigaflop)


@dataclasses.dataclass
class _Batch:
    ids: torch.Tensor
    targets: torch.Tensor
    note: str = "kept"


class _Source:
    size = 3

    def batch(self, index):
        return torch.full((2, 4), index), torch.full((2, 4), index + 1)


def test_device_batches_leave_cpu_batches_alone_and_forward_attributes():
    batches = DeviceBatches(_Source(), CPU)
    x, y = batches.batch(5)
    assert x.device.type == "cpu" and int(x[0, 0]) == 5 and int(y[0, 0]) == 6
    assert batches.size == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_device_batches_move_tuples_and_dataclasses_to_the_gpu():
    batches = DeviceBatches(_Source(), CUDA)
    x, y = batches.batch(1)
    assert x.is_cuda and y.is_cuda and int(y[0, 0]) == 2
    moved = batches.move(_Batch(torch.ones(2), torch.zeros(2)))
    assert moved.ids.is_cuda and moved.targets.is_cuda and moved.note == "kept"
    from stlm.batch import Batch

    real = batches.move(Batch(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long),
                              extras={"future": torch.ones(2, 3)}))
    assert real.ids.is_cuda and real.targets.is_cuda and real.loss_mask is None and real.extras["future"].is_cuda
