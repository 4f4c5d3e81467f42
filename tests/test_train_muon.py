"""Muon: the Newton-Schulz update against an SVD reference written here, the orthogonality of the
update, and optimizer steps against steps computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from stlm.train.optim.muon import Muon, newton_schulz

A, B, C = 3.4445, -4.7750, 2.0315  # the quintic's coefficients (Jordan et al., 2024)


def reference_polar(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The Newton-Schulz iteration acts on each singular value alone: with G = U S V^T and
    s = S / ||G||_F, it maps s -> a s + b s^3 + c s^5 `steps` times and keeps U and V."""
    u, s, vh = torch.linalg.svd(g.double(), full_matrices=False)
    s = s / s.square().sum().sqrt()
    for _ in range(steps):
        s = A * s + B * s ** 3 + C * s ** 5
    return u @ torch.diag(s) @ vh


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])
def test_newton_schulz_equals_the_singular_value_reference(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(g)
    assert out.dtype == g.dtype and out.shape == g.shape
    torch.testing.assert_close(out.double(), reference_polar(g), rtol=0, atol=2e-5)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (64, 64)])
def test_update_is_orthogonal_within_tolerance(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 1e-3  # scale-free
    out = newton_schulz(g).double()
    u, s, vh = torch.linalg.svd(g.double(), full_matrices=False)
    moved = u.T @ out @ vh.T  # the update in g's singular bases: diagonal, the same bases as U V^T
    off = moved - torch.diag(torch.diagonal(moved))
    assert off.abs().max() < 1e-4
    per_direction = torch.diagonal(moved)
    assert per_direction.max() < 1.25
    resolved = s / s.square().sum().sqrt() > 2e-3  # directions five steps can lift (x 3.4445^5)
    assert resolved.float().mean() > 0.9
    assert per_direction[resolved].min() > 0.6, per_direction  # each moves by about the same amount
    polar = u @ vh  # the exact orthogonal factor
    assert (out - polar).norm() / polar.norm() < 0.3


def test_muon_steps_equal_the_hand_computed_ones():
    gen = torch.Generator().manual_seed(2)
    w0 = torch.randn(16, 8, generator=gen)
    grads = [torch.randn(16, 8, generator=gen) for _ in range(3)]
    w = torch.nn.Parameter(w0.clone())
    lr, mu, wd = 0.05, 0.9, 0.1
    opt = Muon([w], lr=lr, momentum=mu, weight_decay=wd)
    w_ref, buf = w0.double(), torch.zeros(16, 8, dtype=torch.float64)
    for g in grads:
        w.grad = g.clone()
        opt.step()
        buf = mu * buf + g.double()
        update = reference_polar(g.double() + mu * buf) * math.sqrt(16 / 8)  # Nesterov; tall: x sqrt(2)
        w_ref = w_ref * (1 - lr * wd) - lr * update
    torch.testing.assert_close(w.detach().double(), w_ref, rtol=0, atol=1e-5)


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="2-D matrices only"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_muon_builder_splits_core_matrices_from_the_rest():
    from stlm.config.schema import ModelConfig, TrainConfig
    from stlm.models import build_model
    from stlm.train.optim import build_optimizer

    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=16,
                                    tie_embeddings=True), 50)
    cfg = TrainConfig(optimizer="muon", lr=2e-3)
    cfg.muon.lr = 0.03
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    muon, adamw = opt.optimizers
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {p: n for n, p in model.named_parameters()}
    in_muon = {names[p] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[p] for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {n for n, p in model.named_parameters() if n.startswith("core.") and p.dim() == 2}
    assert in_muon.isdisjoint(in_adamw) and in_muon | in_adamw == set(names.values())
    assert "embedder.token.weight" in in_adamw and any("norm" in n for n in in_adamw)
    opt.set_lr(1e-3)  # half the peak: each group keeps its own rate
    assert [g["lr"] for g in muon.param_groups] == [pytest.approx(0.015)]
    assert {g["lr"] for g in adamw.param_groups} == {1e-3}


def test_bad_muon_settings_are_refused():
    from stlm.config.loader import ConfigError, compose_config

    with pytest.raises(ConfigError, match="train.muon.momentum < 1"):
        compose_config(["train.optimizer=muon", "train.muon.momentum=1.0"])


@pytest.mark.slow
def test_muon_adamw_run_resumes_bit_exactly(tmp_path):
    import shutil

    from test_train_loop import tiny_overrides

    from stlm.config import compose_config
    from stlm.runs import load_run
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics
    from stlm.train.resume import resume_config

    cfg = compose_config(tiny_overrides(tmp_path, "muon", "train.optimizer=muon", "train.max_steps=16",
                                        "train.checkpoint_every=8", "train.eval_every=8", "train.keep_last=3",
                                        "train.muon.lr=0.02"))
    run_dir = tmp_path / "runs" / "muon"
    run_training(cfg, echo=lambda s: None)
    first = {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")}
    final = {n: p.clone() for n, p in load_run(run_dir, which="last").model.state_dict().items()}
    assert first[16] < first[1] - 1.0  # it learns
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoints" / "step-8" / "trainer.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "optimizer.core.blocks.0.attn.q_proj.weight.momentum_buffer" in keys  # Muon, by name
    assert "optimizer.embedder.token.weight.exp_avg" in keys  # AdamW
    shutil.rmtree(run_dir / "checkpoints" / "step-16")  # back to step 8: Muon momentum + AdamW moments
    run_training(resume_config(run_dir, ["train.progress=false"]), echo=lambda s: None)
    again = {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")}
    assert again == first  # steps 9..16 recomputed: the same floats
    resumed = load_run(run_dir, which="last").model.state_dict()
    assert all(torch.equal(resumed[n], final[n]) for n in final)
