"""MFU: the peak table knows the GPUs it lists and nothing else, FLOPs per token follow the model's
accounting at the trained context, and a run on known hardware logs `mfu` from its own throughput."""

import pytest
import torch

from stlm.config import compose_config
from stlm.models import build_model
from stlm.models.params import count_parameters
from stlm.train import mfu as mfu_mod


@pytest.mark.parametrize("name, model", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", "L40"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
])
def test_known_gpus_have_their_peak(name, model):
    found = mfu_mod.peak_bf16_flops(name)
    assert found is not None and found[0] == model


def test_specific_peaks():
    assert mfu_mod.peak_bf16_flops("NVIDIA H100 80GB HBM3")[1] == pytest.approx(989.4e12)
    assert mfu_mod.peak_bf16_flops("NVIDIA L40")[1] == pytest.approx(181.0e12)
    assert mfu_mod.peak_bf16_flops("NVIDIA L40S")[1] == pytest.approx(362.1e12)


@pytest.mark.parametrize("name", ["NVIDIA A10G", "Tesla V100-SXM2-16GB", "Tesla T4", "NVIDIA H100",
                                  "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "Some Future GPU"])
def test_unknown_or_partial_gpus_have_no_peak(name):
    assert mfu_mod.peak_bf16_flops(name) is None


def test_cpu_has_no_mfu():
    assert mfu_mod.device_peak_flops(torch.device("cpu")) is None
    assert mfu_mod.mfu(1e6, 1e6, None) is None


def test_flops_per_token_at_the_model_context_is_the_accounting():
    model = build_model(compose_config(["model=tiny-1m"]).model, 1024)
    report = count_parameters(model)
    assert mfu_mod.training_flops_per_token(model, 128) == report.flops_per_token
    half = mfu_mod.training_flops_per_token(model, 64)
    attention = report.flops_per_token - 6 * report.matmul_params_per_token
    assert attention > 0 and half == pytest.approx(report.flops_per_token - attention / 2)
    assert mfu_mod.mfu(1000.0, 1e9, 1e13, devices=2) == pytest.approx(1000 * 1e9 / 2e13)


@pytest.mark.slow
def test_a_run_on_known_hardware_logs_mfu(tmp_path, monkeypatch):
    """Pretend the CPU were a GPU with a 1 TFLOP/s peak: every logged step carries
    mfu = tok_per_s * flops_per_token / peak."""
    from test_train_loop import tiny_overrides

    from stlm.train import Trainer, trainer as trainer_mod
    from stlm.train.metrics import read_metrics

    monkeypatch.setattr(trainer_mod, "device_peak_flops", lambda device: 1e12)
    cfg = compose_config(tiny_overrides(tmp_path, "mfu", "train.max_steps=6", "train.eval_every=100",
                                        "train.checkpoint_every=100"))
    from stlm.data import prepare_data
    from stlm.runs import create_run_dir

    trainer = Trainer(cfg, create_run_dir(cfg), prepare_data(cfg.data, progress=False))
    trainer.fit()
    records = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if "tok_per_s" in r]
    flops = mfu_mod.training_flops_per_token(trainer.model, 32)
    assert len(records) == 6
    for r in records:
        assert r["mfu"] == pytest.approx(r["tok_per_s"] * flops / 1e12)
