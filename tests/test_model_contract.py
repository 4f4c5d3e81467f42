"""The model contract: typed output, one scoring call, heads as registered components, accounting
by component kind, optimizers by name. The multi-token head (one component file) proves that a
new head trains, resumes, evaluates and reports its auxiliary losses with no edit elsewhere."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stlm.batch import Batch
from stlm.config import compose_config
from stlm.config.schema import ModelConfig, TrainConfig
from stlm.errors import UserError
from stlm.models import build_model
from stlm.models.components.heads import TokenHead
from stlm.models.params import count_parameters
from stlm.models.registry import REGISTRIES, register
from stlm.train.optim import OPTIMIZERS, OptimizerSet, adamw, build_optimizer, register_optimizer
from tiny_runs import grammar_overrides, resume_from_step_20

SMALL = ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, context_length=32)


@pytest.mark.parametrize("preset", ["tiny-1m", "sllama", "llama_shared_lora", "learned_pe", "tiny-1m-mtp"])
def test_logprobs_is_log_softmax_of_the_logits(preset, one_thread):
    cfg = dataclasses.replace(compose_config([f"model={preset}"]).model, d_model=48, d_ff=96,
                              n_heads=4, n_kv_heads=None, vocab_size=None, context_length=32)
    torch.manual_seed(0)
    model = build_model(cfg, 61).eval()
    ids, targets = torch.randint(0, 61, (2, 12)), torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        logits = model(ids).logits
        logp, greedy = model.logprobs(ids, targets)
    expected = F.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(logp, expected, rtol=0, atol=1e-5)
    assert torch.equal(greedy, logits.argmax(-1) == targets)
    with torch.no_grad():  # the head-free path: encode, then score chosen rows
        h = model.encode(ids)
        rows_logp, _ = model.target_logprobs(h[1, 3:7], targets[1, 3:7])
    torch.testing.assert_close(rows_logp, expected[1, 3:7], rtol=0, atol=1e-5)


def test_output_carries_loss_hidden_states_and_respects_the_loss_mask(one_thread):
    torch.manual_seed(0)
    model = build_model(SMALL, 50).eval()
    ids, targets = torch.randint(0, 50, (2, 10)), torch.randint(0, 50, (2, 10))
    out = model(ids, targets, output_hidden_states=True)
    assert len(out.hidden_states) == SMALL.n_layers + 1 and out.aux_losses == {}
    torch.testing.assert_close(out.logits, model(ids).logits)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, 50), targets.reshape(-1)))
    assert torch.equal(out.loss, out.lm_loss)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, 4:] = True
    masked = model(ids, targets, loss_mask=mask).loss
    by_hand = F.cross_entropy(out.logits[:, 4:].reshape(-1, 50), targets[:, 4:].reshape(-1))
    torch.testing.assert_close(masked, by_hand)
    assert model(ids, logits="last").logits.shape == (2, 1, 50) and model(ids, logits="none").logits is None


def test_unknown_head_is_refused_with_the_choices():
    with pytest.raises(Exception, match=r"model.head.*multi_token.*token"):
        compose_config(["model.head=nope"])


def test_a_new_head_is_counted_without_editing_the_accounting():
    """A head registered in a test file: its parameters land under 'head' and its matmuls in FLOPs."""

    @register("head", "test_bottleneck")
    class BottleneckHead(TokenHead):
        def __init__(self, cfg, vocab_size):
            super().__init__(cfg, vocab_size)
            self.down = nn.Linear(cfg.d_model, 8, bias=False)
            self.up = nn.Linear(8, cfg.d_model, bias=False)

        def forward(self, h):
            return super().forward(h + self.up(self.down(h)))

    try:
        plain = count_parameters(build_model(SMALL, 50))
        extra = count_parameters(build_model(dataclasses.replace(SMALL, head="test_bottleneck"), 50))
    finally:
        del REGISTRIES["head"]["test_bottleneck"]
    assert extra.by_component["head"] - plain.by_component["head"] == 2 * 8 * 32
    assert extra.total - plain.total == 2 * 8 * 32
    assert extra.flops_per_token - plain.flops_per_token == 6 * 2 * 8 * 32


def test_flops_follow_the_computation_of_shared_layers():
    """A block shared by every layer has one layer's parameters but is used (and counted) per layer."""
    plain = count_parameters(build_model(SMALL, 50))
    shared = count_parameters(build_model(dataclasses.replace(
        SMALL, sharing=dataclasses.replace(SMALL.sharing, layers="groups", groups=1)), 50))
    assert shared.total < plain.total
    assert shared.flops_per_token == plain.flops_per_token


def test_multi_token_aux_losses_predict_the_tokens_after_the_next(one_thread):
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, head="multi_token", mtp_tokens=3, mtp_weight=0.5)
    model = build_model(cfg, 50)
    seq = torch.randint(0, 50, (2, 13))
    ids, targets = seq[:, :-1], seq[:, 1:]
    out = model(ids, targets)
    assert set(out.aux_losses) == {"mtp_t+2", "mtp_t+3"}
    h = model.encode(ids)
    head = model.head
    for offset, name in ((1, "mtp_t+2"), (2, "mtp_t+3")):
        logits = head(head.extra[offset - 1](h[:, :-offset]))  # position t predicts seq[t + offset + 1]
        by_hand = F.cross_entropy(logits.reshape(-1, 50), seq[:, offset + 1:].reshape(-1))
        torch.testing.assert_close(out.aux_losses[name], by_hand)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.5 * sum(out.aux_losses.values()))
    plain = build_model(SMALL, 50)
    plain.load_state_dict(model.state_dict(), strict=False)  # inference equals the plain model's
    torch.testing.assert_close(plain(ids).logits, model(ids).logits)
    report = count_parameters(model)
    assert report.by_component["head"] == sum(p.numel() for p in head.extra.parameters()) + 50 * 32


# ---------------------------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------------------------


@register_optimizer("test_sgd_matrices")
def _sgd_for_matrices(model, cfg, device):
    """Two optimizers: SGD with momentum at twice the rate for matrices, AdamW for vectors."""
    named = [(n, p) for n, p in model.named_parameters()]
    sgd = torch.optim.SGD([{"params": [p for _, p in named if p.dim() >= 2], "lr_scale": 2.0}],
                          lr=cfg.lr, momentum=0.9)
    rest = adamw([{"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0}], cfg, device)
    return OptimizerSet([sgd, rest], model)


def _step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 50, (2, 12), generator=g)
    model(x, x.roll(-1, 1)).loss.backward()
    opt.step()
    opt.zero_grad()


def test_two_optimizers_resume_exactly_by_parameter_name(tmp_path, one_thread):
    from stlm.train import checkpoint as ckpt

    cfg = TrainConfig(optimizer="test_sgd_matrices", lr=1e-2)
    torch.manual_seed(0)
    model = build_model(SMALL, 50)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    opt.set_lr(1e-2)
    assert sorted(g["lr"] for g in opt.param_groups) == [1e-2, 2e-2]  # per-group rates
    for s in range(3):
        _step(model, opt, s)
    path = ckpt.save_checkpoint(tmp_path, 3, model, opt, {})
    torch.manual_seed(1)
    resumed = build_model(SMALL, 50)
    resumed_opt = build_optimizer(resumed, cfg, torch.device("cpu"))
    resumed_opt.set_lr(1e-2)
    ckpt.load_weights(resumed, path)
    ckpt.load_training_state(path, resumed_opt)
    for s in range(3, 6):
        _step(model, opt, s)
        _step(resumed, resumed_opt, s)
    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert any(k.endswith(".momentum_buffer") for k in resumed_opt.state_tensors())


def test_optimizer_state_for_a_parameter_the_model_lacks_is_refused(tmp_path):
    from stlm.train import checkpoint as ckpt

    model = build_model(SMALL, 50)
    opt = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    _step(model, opt, 0)
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, {})
    other = build_model(dataclasses.replace(SMALL, head="multi_token"), 50)
    other_opt = build_optimizer(other, TrainConfig(), torch.device("cpu"))
    _step(other, other_opt, 0)
    path2 = ckpt.save_checkpoint(tmp_path / "b", 1, other, other_opt, {})
    with pytest.raises(UserError, match=r"head\.extra\.0.*config\.yaml changed"):
        ckpt.load_training_state(path2, build_optimizer(model, TrainConfig(), torch.device("cpu")))
    ckpt.load_training_state(path, build_optimizer(model, TrainConfig(), torch.device("cpu")))


def test_unknown_optimizer_is_refused_with_the_choices():
    with pytest.raises(Exception, match=r"train.optimizer.*adamw"):
        compose_config(["train.optimizer=nope"])
    assert "adamw" in OPTIMIZERS


# ---------------------------------------------------------------------------------------------
# The multi-token head end to end: no edit in train/, eval/ or the accounting
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_multi_token_head_trains_resumes_evaluates_and_reports_aux_losses(tmp_path):
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    whole = run_training(compose_config(grammar_overrides(tmp_path, "whole", "tiny-1m-mtp")), echo=lambda s: None)
    records = read_metrics(Path(whole["run_dir"]) / "metrics.jsonl")
    train = [r for r in records if "aux.mtp_t+2" in r]
    assert train and all({"aux.mtp_t+3", "aux.mtp_t+4", "objective"} <= set(r) for r in train)
    assert train[-1]["aux.mtp_t+2"] < train[0]["aux.mtp_t+2"]  # the extra heads learn too
    assert train[-1]["loss"] < train[0]["loss"]
    assert whole["val_bpb"] < 8.0 and "minimal_pairs" in json.dumps(whole)

    # resume from the step-20 checkpoint of a copy: steps 21-40 must repeat exactly
    resumed = resume_from_step_20(whole["run_dir"], tmp_path / "runs" / "copy")
    for r in train:
        assert resumed[r["step"]]["loss"] == r["loss"]
        assert resumed[r["step"]]["aux.mtp_t+4"] == r["aux.mtp_t+4"]
