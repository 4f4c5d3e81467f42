"""Distillation loss: zero KL for a teacher equal to the student, KL against a hand computation,
and the mixing of label and soft losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stlm.train.distill import distillation_kl, distillation_loss


def logits(seed: int, shape=(2, 5, 7)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_identical_teacher_gives_zero_kl(direction):
    s = logits(0)
    assert distillation_kl(s, s.clone(), temperature=2.0, direction=direction).item() == pytest.approx(0, abs=1e-6)


def test_kl_equals_the_hand_computed_value():
    s, t = logits(1, (1, 1, 3)), logits(2, (1, 1, 3))
    T = 2.0
    ps = [math.exp(v / T) for v in s.flatten().tolist()]
    pt = [math.exp(v / T) for v in t.flatten().tolist()]
    ps, pt = [v / sum(ps) for v in ps], [v / sum(pt) for v in pt]
    fwd = sum(b * math.log(b / a) for a, b in zip(ps, pt)) * T * T
    rev = sum(a * math.log(a / b) for a, b in zip(ps, pt)) * T * T
    assert distillation_kl(s, t, T, "forward").item() == pytest.approx(fwd, rel=1e-5)
    assert distillation_kl(s, t, T, "reverse").item() == pytest.approx(rev, rel=1e-5)
    assert fwd != pytest.approx(rev, rel=1e-3)  # the two directions differ


def test_mixing_and_ignored_targets():
    s, t = logits(3), logits(4)
    y = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(5))
    y[0, 0] = -100
    total, ce, kl = distillation_loss(s, t, y, weight=0.25, temperature=1.5)
    assert ce.item() == pytest.approx(F.cross_entropy(s.reshape(-1, 7), y.reshape(-1), ignore_index=-100).item())
    keep = y != -100
    assert kl.item() == pytest.approx(distillation_kl(s[keep], t[keep], 1.5).item(), rel=1e-6)
    assert total.item() == pytest.approx(0.75 * ce.item() + 0.25 * kl.item(), rel=1e-6)
    assert distillation_loss(s, t, y, weight=0.0)[0].item() == pytest.approx(ce.item())


def test_bad_direction_and_vocab_mismatch_are_refused():
    with pytest.raises(ValueError, match="valid choices: forward, reverse"):
        distillation_kl(logits(0), logits(1), direction="sideways")
    with pytest.raises(ValueError, match="same vocabulary"):
        distillation_kl(logits(0), logits(1, (2, 5, 8)))


def test_a_teacher_that_is_a_copy_of_the_student_gives_zero_kl():
    import copy

    from stlm.config.schema import ModelConfig
    from stlm.models import build_model
    from stlm.train.losses import DistillationLoss

    torch.manual_seed(0)
    student = build_model(ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=2,
                                      d_ff=64)).train()
    x = torch.randint(0, 50, (2, 16))
    y = torch.randint(0, 50, (2, 16))
    same = DistillationLoss(student, copy.deepcopy(student), weight=0.3, temperature=2.0, direction="forward")
    loss, lm, aux = same(x, y)
    assert aux["distill_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.7 * lm.item(), rel=1e-6)
    assert [n for n, _ in same.named_parameters()] == [f"model.{n}" for n, _ in student.named_parameters()]
    torch.manual_seed(1)
    other = build_model(student.cfg)
    _, _, aux = DistillationLoss(student, other, 0.3, 2.0, "reverse")(x, y)
    assert aux["distill_kl"].item() > 1e-4
    loss.backward()  # gradients reach the student only
    assert student.head.linear.weight.grad is not None


@pytest.mark.slow
def test_distillation_run_from_a_teacher_run(tmp_path):
    from test_train_loop import tiny_overrides

    from stlm.config import compose_config
    from stlm.errors import UserError
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    teacher = run_training(compose_config(tiny_overrides(tmp_path, "teacher", "train.max_steps=40")),
                           echo=lambda s: None)
    student = ["train.max_steps=20", "train.loss=distill", f"train.distill.teacher={teacher['run_dir']}",
               "train.distill.weight=0.5"]
    run_training(compose_config(tiny_overrides(tmp_path, "student", *student)), echo=lambda s: None)
    records = read_metrics(tmp_path / "runs" / "student" / "metrics.jsonl")
    kl = [r["aux.distill_kl"] for r in records]
    assert len(kl) == 20 and all(math.isfinite(v) for v in kl)
    assert kl[-1] < kl[0] / 2  # the student moves towards the teacher
    assert records[-1]["objective"] == pytest.approx(0.5 * records[-1]["loss"] + 0.5 * kl[-1], rel=1e-4)
    with pytest.raises(UserError, match="needs a teacher"):
        run_training(compose_config(tiny_overrides(tmp_path, "orphan", "train.loss=distill")), echo=lambda s: None)
