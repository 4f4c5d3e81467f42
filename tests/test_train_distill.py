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
