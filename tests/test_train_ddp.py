"""Data-parallel training under torchrun (gloo on CPU): Muon under DDP equals one process, and the
run directory reaches every rank without pickling. DDP with gradient accumulation against one
process, FSDP, and checkpoints across world sizes: tests/test_train_fsdp.py."""

import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from stlm.config import compose_config
from stlm.runs import load_run
from stlm.train import run_training
from stlm.train.metrics import read_metrics
from test_train_loop import tiny_overrides

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.mark.slow
def test_muon_under_two_ranks_matches_one_process(tmp_path):
    """Muon orthogonalises the all-reduced gradient, so two ranks take the single process's steps."""
    common = ["train.max_steps=4", "data.sampling=sequential", "train.eval_every=4", "train.checkpoint_every=4",
              "train.optimizer=muon"]
    run_training(compose_config(tiny_overrides(tmp_path, "single", *common, "train.batch_size=8")),
                 echo=lambda s: None)
    ddp_args = tiny_overrides(tmp_path, "ddp", *common, "train.batch_size=4")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "stlm.cli", "train", *ddp_args], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = read_metrics(tmp_path / "runs" / "ddp" / "metrics.jsonl")
    ref = read_metrics(tmp_path / "runs" / "single" / "metrics.jsonl")
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in ref], rel=1e-4)
    x = torch.randint(0, 257, (2, 32), generator=torch.Generator().manual_seed(0))
    one, two = (load_run(tmp_path / "runs" / name, which="last").model for name in ("single", "ddp"))
    torch.testing.assert_close(two(x).logits, one(x).logits, rtol=1e-3, atol=1e-4)


def _broadcast_worker(rank: int, port: int, out) -> None:
    import os

    from stlm.train.setup import Runtime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        rt = Runtime(torch.device("cpu"), None, rank, 2)
        out.put((rank, rt.broadcast_text("runs/tiny-1m-grämmar-é/ok" if rank == 0 else None)))
    finally:
        dist.destroy_process_group()


def test_run_directory_reaches_every_rank_as_text_without_pickling():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_broadcast_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == {0: "runs/tiny-1m-grämmar-é/ok", 1: "runs/tiny-1m-grämmar-é/ok"}
