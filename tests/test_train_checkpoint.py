"""Checkpoints: ties survive a reload, optimizer and RNG state round-trip, writes are atomic,
corrupt files give a clear error, pruning keeps the best."""

import shutil

import pytest
import torch

from stlm.config.schema import ModelConfig, TrainConfig
from stlm.errors import UserError
from stlm.models import build_model
from stlm.train import checkpoint as ckpt
from stlm.train.optim import build_optimizer

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=32, tie_embeddings=True)


def trained(seed=0, steps=3):
    torch.manual_seed(seed)
    model = build_model(CFG, 257)
    opt = build_optimizer(model, TrainConfig(lr=1e-2), torch.device("cpu"))
    for _ in range(steps):
        x = torch.randint(0, 257, (2, 16))
        model(x, x.roll(-1, dims=1)).loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_round_trip_keeps_ties_logits_and_optimizer_state(tmp_path):
    model, opt = trained()
    torch.manual_seed(123)
    path = ckpt.save_checkpoint(tmp_path, 3, model, opt, {"tokens": 96})
    expected_next_random = torch.rand(3)

    fresh, fresh_opt = trained(seed=1, steps=0)
    ckpt.load_weights(fresh, path)
    meta = ckpt.load_training_state(path, fresh_opt)
    assert torch.equal(torch.rand(3), expected_next_random)  # the torch RNG continues where it was
    assert meta["step"] == 3 and meta["tokens"] == 96
    assert fresh.head.linear.weight is fresh.embedder.token.weight  # one tensor, not two copies
    x = torch.randint(0, 257, (2, 16))
    assert torch.equal(fresh(x).logits, model(x).logits)
    a, b = opt.state_tensors(), fresh_opt.state_tensors()
    assert a.keys() == b.keys() and "head.linear.weight.exp_avg" not in a  # tied: one name
    assert "embedder.token.weight.exp_avg" in a  # keyed by parameter name
    for k in a:
        assert torch.equal(a[k], b[k])


def test_untied_model_stays_untied(tmp_path):
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, context_length=32)
    model = build_model(cfg, 257)
    opt = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, {})
    fresh = build_model(cfg, 257)
    ckpt.load_weights(fresh, path)
    assert fresh.head.linear.weight is not fresh.embedder.token.weight
    assert torch.equal(fresh.head.linear.weight, model.head.linear.weight)


def test_leftover_tmp_dirs_are_ignored_and_pruned(tmp_path):
    model, opt = trained(steps=1)
    for step in (10, 20, 30, 40):
        path = ckpt.save_checkpoint(tmp_path, step, model, opt, {})
        if step == 20:
            ckpt.mark_best(tmp_path, path, 1.5)
    (tmp_path / ".tmp-step-50").mkdir()  # a crash in the middle of writing step 50
    (tmp_path / ".tmp-step-50" / ckpt.MODEL_FILE).write_bytes(b"partial")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-40"
    ckpt.prune(tmp_path, keep_last=2)
    assert [p.name for p in ckpt.step_dirs(tmp_path)] == ["step-20", "step-30", "step-40"]  # best kept
    assert ckpt.best_checkpoint(tmp_path).name == "step-20"
    assert not list(tmp_path.glob(".tmp-*"))


def test_corrupt_or_missing_files_name_the_file(tmp_path):
    model, opt = trained(steps=1)
    path = ckpt.save_checkpoint(tmp_path, 5, model, opt, {})
    weights = path / ckpt.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match=str(weights)):
        ckpt.load_weights(build_model(CFG, 257), path)
    (path / ckpt.META_FILE).write_text("{not json")
    with pytest.raises(UserError, match="trainer.json"):
        ckpt.load_training_state(path, opt)
    shutil.rmtree(path)
    path = ckpt.save_checkpoint(tmp_path, 6, model, opt, {})
    (path / ckpt.STATE_FILE).unlink()
    with pytest.raises(UserError, match="trainer.safetensors.*missing"):
        ckpt.load_training_state(path, opt)


def test_weights_of_another_shape_are_a_clear_error(tmp_path):
    model, opt = trained(steps=1)
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, {})
    other = build_model(ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=64, context_length=32), 257)
    with pytest.raises(UserError, match="does not fit the model"):
        ckpt.load_weights(other, path)
