"""FSDP2 and DDP under torchrun (gloo on CPU) against one process with the same global batch, and
checkpoints that move between world sizes: written by 2 ranks and resumed by 1, and back, the
continued losses equal to the uninterrupted run's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from stlm.config import compose_config
from stlm.errors import UserError
from stlm.models import build_model
from stlm.runs import load_run
from stlm.train import run_training
from stlm.train.checkpoint import read_meta
from stlm.train.metrics import read_metrics
from stlm.train.resume import resume_config
from stlm.train.setup import shard_units
from test_train_loop import tiny_overrides

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

STEPS = ["train.max_steps=4", "data.sampling=sequential", "train.eval_every=4", "train.checkpoint_every=2",
         "train.keep_last=3", "eval.final_val_batches=1", "eval.minimal_pairs=false"]
SHARED = ["train.optimizer=muon", "model.tie_embeddings=true", "model.sharing.layers=groups"]


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl")]


def cut_at_step_2(run: Path, copy: Path) -> Path:
    """`run` as it was after its step-2 checkpoint (a run killed then)."""
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints" / "step-4")
    (copy / "checkpoints" / "best").unlink()
    return copy


def torchrun(*runs: list[str]) -> str:
    """Run `runs` under torchrun with 2 ranks; return what the ranks printed."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(Path(__file__).with_name("distributed_runs.py")), *map(json.dumps, runs)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "STLM_RUNS_TIMEOUT": "150"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_fsdp_and_ddp_match_one_process_and_checkpoints_cross_world_sizes(tmp_path):
    runs = tmp_path / "runs"
    for name, extra in (("one", ["train.batch_size=8"]), ("one-shared", ["train.batch_size=8", *SHARED])):
        run_training(compose_config(tiny_overrides(tmp_path, name, *STEPS, *extra)), echo=lambda s: None)
    for parallel in ("fsdp", "ddp"):
        cut_at_step_2(runs / "one", runs / f"one-to-{parallel}")
    printed = torchrun(tiny_overrides(tmp_path, "fsdp", *STEPS, "train.batch_size=4", "train.parallel=fsdp"),
             tiny_overrides(tmp_path, "ddp", *STEPS, "train.batch_size=2", "train.grad_accum=2"),
             tiny_overrides(tmp_path, "fsdp-shared", *STEPS, "train.batch_size=2", "train.grad_accum=2",
                            "train.parallel=fsdp", *SHARED),
             # 1 process -> 2 ranks: the same 8 sequences per step as 4 per rank
             [f"resume={runs / 'one-to-fsdp'}", "train.batch_size=4", "train.parallel=fsdp"],
             [f"resume={runs / 'one-to-ddp'}", "train.batch_size=4"])
    assert printed.count("step 4: train loss") == 5  # rank 0 alone prints, once per run
    meta = {name: read_meta(runs / name / "checkpoints" / "step-4") for name in ("fsdp", "ddp", "one-to-fsdp")}
    assert {n: (m["parallel"], m["world_size"]) for n, m in meta.items()} == {
        "fsdp": ("fsdp", 2), "ddp": ("ddp", 2), "one-to-fsdp": ("fsdp", 2)}
    ref = losses(runs / "one")
    assert len(ref) == 4
    for name in ("fsdp", "ddp", "one-to-fsdp", "one-to-ddp"):
        assert losses(runs / name) == pytest.approx(ref, rel=1e-4), name
    assert losses(runs / "fsdp-shared") == pytest.approx(losses(runs / "one-shared"), rel=1e-4)
    # 2 ranks -> 1 process
    for parallel in ("fsdp", "ddp"):
        back = cut_at_step_2(runs / parallel, runs / f"{parallel}-to-one")
        run_training(resume_config(back, ["train.batch_size=8", "train.grad_accum=1"]), echo=lambda s: None)
        assert losses(back) == pytest.approx(ref, rel=1e-4), parallel
    x = torch.randint(0, 257, (2, 32), generator=torch.Generator().manual_seed(0))
    expected = load_run(runs / "one", which="last").model(x).logits
    for name in ("fsdp", "ddp", "one-to-fsdp", "fsdp-to-one"):
        torch.testing.assert_close(load_run(runs / name, which="last").model(x).logits, expected,
                                   rtol=1e-3, atol=1e-4)
    shared, one_shared = (load_run(runs / name, which="last").model for name in ("fsdp-shared", "one-shared"))
    names = [n for n, _ in shared.named_parameters(remove_duplicate=False)]
    assert len(names) > len(list(shared.parameters())) == len(list(one_shared.parameters()))  # still tied
    torch.testing.assert_close(shared(x).logits, one_shared(x).logits, rtol=1e-3, atol=1e-4)
    assert sorted(p.name for p in runs.iterdir()) == sorted(  # one run directory per run, whatever the ranks
        ["one", "one-shared", "one-to-fsdp", "one-to-ddp", "fsdp", "ddp", "fsdp-shared", "fsdp-to-one", "ddp-to-one"])
    # a resume that would change the global batch is refused, naming the grad_accum that keeps it
    with pytest.raises(UserError, match=r"8 sequences per optimizer step.*train.grad_accum=2"):
        run_training(resume_config(runs / "one", ["train.max_steps=6", "train.batch_size=4"]), echo=lambda s: None)


def test_blocks_sharing_weights_form_one_fsdp_unit(tmp_path):
    cfg = compose_config(tiny_overrides(tmp_path, "u", "model.n_layers=4"))
    plain = build_model(cfg.model, 257)
    assert [len(u) for u in shard_units(plain)] == [1, 1, 1, 1]
    two_groups = compose_config(tiny_overrides(tmp_path, "u", "model.n_layers=4", "model.sharing.layers=groups",
                                               "model.sharing.groups=2")).model
    units = shard_units(build_model(two_groups, 257))
    assert [len(u) for u in units] == [2, 2]
    sllama = compose_config(["model=sllama"]).model
    model = build_model(sllama, 257)
    assert [len(u) for u in shard_units(model)] == [model.n_layers]  # one block shared by all layers
