"""On a CUDA GPU: bf16 autocast and torch.compile compute what float32 eager computes (within
tolerance), the KV cache generates what full recomputation generates, and a run interrupted and
resumed on the GPU continues the uninterrupted run's losses. Skipped without CUDA; run by
benchmarks/gpu_check.sh. Never measured in this repository's CI (it has no GPU).

STLM_TEST_DEVICE=cpu runs the same checks on the CPU (slow: compiling takes a minute there), to
check the tests themselves on a machine without a GPU."""

import os

from pathlib import Path

import pytest
import torch

from stlm.config import compose_config
from stlm.models import build_model

DEVICE = os.environ.get("STLM_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)")]

SMALL = ["model=baseline", "model.d_model=128", "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=2",
         "model.d_ff=384", "model.vocab_size=1024", "model.context_length=128", "model.dropout=0.0"]


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(compose_config(SMALL).model).to(DEVICE).train()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.vocab_size, (8, 129), generator=g).to(DEVICE)
    return model, ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def _loss(model):
    return lambda ids, targets: model(ids, targets).loss


def _loss_and_grads(loss_fn, model, x, y, dtype=None):
    model.zero_grad(set_to_none=True)
    with torch.autocast(torch.device(DEVICE).type, dtype=dtype, enabled=dtype is not None):
        loss = loss_fn(x, y)
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters()])
    return loss.item(), grads


def _cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def test_bf16_autocast_matches_fp32_eager():
    model, x, y = _model_and_batch()
    ref_loss, ref_grads = _loss_and_grads(_loss(model), model, x, y)
    loss, grads = _loss_and_grads(_loss(model), model, x, y, torch.bfloat16)
    assert loss == pytest.approx(ref_loss, rel=2e-2)
    assert _cosine(grads, ref_grads) > 0.99


def test_compile_matches_eager_in_fp32_and_bf16():
    model, x, y = _model_and_batch()
    ref_loss, ref_grads = _loss_and_grads(_loss(model), model, x, y)
    compiled = torch.compile(_loss(model))
    loss, grads = _loss_and_grads(compiled, model, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    assert torch.allclose(grads, ref_grads, rtol=1e-3, atol=1e-5)
    loss16, grads16 = _loss_and_grads(compiled, model, x, y, torch.bfloat16)
    assert loss16 == pytest.approx(ref_loss, rel=2e-2)
    assert _cosine(grads16, ref_grads) > 0.99


def test_kv_cache_generates_what_recomputation_generates():
    from stlm.generate import generate_ids

    model, x, _ = _model_and_batch(seed=1)
    prompt = x[0, :10].tolist()
    cached = generate_ids(model, prompt, 40, temperature=0.0, use_cache=True)
    recomputed = generate_ids(model, prompt, 40, temperature=0.0, use_cache=False)
    assert cached == recomputed and len(cached) == 40


@pytest.mark.slow
def test_training_resumed_on_the_gpu_continues_the_uninterrupted_losses(tmp_path):
    """Train 40 steps on the GPU (checkpoints at 20 and 40); a copy of the run cut back to its
    step-20 checkpoint, resumed, logs the uninterrupted run's losses for steps 21-40. GPU kernels
    (the embedding backward uses atomics) are not bit-reproducible: a tolerance."""
    import shutil

    from test_train_loop import tiny_overrides

    from stlm.train import run_training
    from stlm.train.metrics import read_metrics
    from stlm.train.resume import resume_config

    overrides = tiny_overrides(tmp_path, "whole", f"train.device={DEVICE}", "train.max_steps=40",
                               "train.checkpoint_every=20", "train.eval_every=20")
    whole = Path(run_training(compose_config(overrides), echo=lambda s: None)["run_dir"])
    cut = tmp_path / "runs" / "cut"
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "step-40")
    (cut / "checkpoints" / "best").unlink(missing_ok=True)
    run_training(resume_config(cut, ["train.progress=false"]), echo=lambda s: None)

    def losses(path: Path):
        return {r["step"]: r["loss"] for r in read_metrics(path / "metrics.jsonl") if "loss" in r}

    expected, got = losses(whole), losses(cut)
    assert sorted(got) == list(range(1, 41))
    for step in range(21, 41):
        assert got[step] == pytest.approx(expected[step], rel=1e-3, abs=1e-4), step
