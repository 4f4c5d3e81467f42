"""The hot loop reads nothing back from the device between log steps: losses and gradient norms
are read in one go at log, evaluation and checkpoint steps. The logged numbers are the ones a
per-step read-back gives, and a non-finite loss is still caught, naming its step."""

import pytest
import torch

from stlm.config import compose_config
from stlm.runs import create_run_dir
from stlm.train.checkpoint import latest_checkpoint
from stlm.train.metrics import read_metrics
from stlm.train.trainer import Trainer, TrainingDiverged
from test_train_loop import nan_loss_after, tiny_overrides


def trainer(root, name, *extra):
    from stlm.data import prepare_data

    cfg = compose_config(tiny_overrides(root, name, "train.max_steps=12", "train.eval_every=6",
                                        "train.checkpoint_every=6", *extra))
    return Trainer(cfg, create_run_dir(cfg), prepare_data(cfg.data, progress=False))


@pytest.mark.slow
def test_sparse_logging_logs_the_numbers_of_per_step_read_back(tmp_path, monkeypatch):
    every = trainer(tmp_path, "every", "train.log_every=1")
    every.fit()
    sparse = trainer(tmp_path, "sparse", "train.log_every=4")
    reads, inside = [], []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def spy(t, *a, _original=original, **k):
            (inside if in_step else reads).append(sparse.state.step)
            return _original(t, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    step = sparse.train_step
    in_step = False

    def train_step():
        nonlocal in_step
        in_step = True
        try:
            return step()
        finally:
            in_step = False

    sparse.train_step = train_step
    sparse.fit()
    monkeypatch.undo()
    assert inside == []  # a training step never waits for a value
    assert sorted(set(reads)) == [4, 6, 8, 12]  # read back at log (4, 8, 12) and eval/checkpoint (6) steps
    dense = {r["step"]: r for r in read_metrics(every.run_dir / "metrics.jsonl")}
    logged = read_metrics(sparse.run_dir / "metrics.jsonl")
    assert [r["step"] for r in logged] == [4, 6, 8, 12]
    for r in logged:
        for key in ("loss", "grad_norm", "lr", "tokens"):
            if key in r:
                assert r[key] == dense[r["step"]][key], (r["step"], key)  # identical floats
        assert ("loss" in r) == (r["step"] != 6)  # step 6: validation only, as before


def test_a_non_finite_loss_between_log_steps_names_its_step_and_writes_no_checkpoint(tmp_path):
    t = trainer(tmp_path, "nan", "train.log_every=4", "train.checkpoint_every=4", "train.eval_every=100")
    t.model.register_forward_hook(nan_loss_after(5))  # from the 6th training step on, the loss is NaN
    with pytest.raises(TrainingDiverged, match=r"the training loss is nan at step 6; the last good checkpoint is "
                                               r".*step-4"):
        t.fit()
    assert latest_checkpoint(t.run_dir / "checkpoints").name == "step-4"  # none written at step 8
    assert [r["step"] for r in read_metrics(t.run_dir / "metrics.jsonl")] == [4]
