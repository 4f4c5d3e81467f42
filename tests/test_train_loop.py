"""The training loop end to end on real text (tiny shakespeare, byte tokenizer): it learns, writes
a complete run directory, stops on a non-finite loss keeping the last good checkpoint, and refuses
an unwritable run directory before any work."""

import json
import math
from pathlib import Path

import pytest
import torch

from stlm.config import compose_config
from stlm.errors import UserError
from stlm.runs import create_run_dir, load_run
from stlm.train import Trainer, TrainingDiverged, run_training
from stlm.train.checkpoint import latest_checkpoint
from stlm.train.metrics import read_metrics


def tiny_overrides(root: Path, name: str, *extra: str) -> list[str]:
    """A ~20k-parameter byte-level model on 2,000 stories (~0.8 MB) of the built-in grammar corpus
    (no downloads, no local data), prepared data cached under root."""
    return [f"runs_dir={root / 'runs'}", f"run_name={name}", "data.name=grammar-2k",
            "data.sources=[{name:grammar,seed:0,max_documents:2000}]", "data.tokenizer.kind=byte",
            "data.val_fraction=0.05",
            f"data.cache_dir={root / 'cache'}", "model.name=micro", "model.d_model=32", "model.n_layers=2",
            "model.n_heads=2", "model.d_ff=64", "model.context_length=32", "train.context_length=32",
            "train.batch_size=8", "train.max_steps=60", "train.warmup_steps=5", "train.lr=1e-2", "train.min_lr=1e-3",
            "train.log_every=1", "train.eval_every=20", "train.eval_batches=4", "train.checkpoint_every=20",
            "train.progress=false", "train.threads=1", "eval.final_val_batches=4", "eval.sample_tokens=16",
            "eval.sample_prompt=The", *extra]


def nan_loss_after(good_steps: int):
    """A forward hook making the training loss NaN from training forward `good_steps + 1` on."""
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += module.training and output.loss is not None
        if calls["n"] > good_steps and output.loss is not None:
            output.loss = output.loss * math.nan
        return output

    return poison


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.mark.slow
def test_tiny_model_learns_and_writes_a_complete_run(root, capsys):
    printed = []
    summary = run_training(compose_config(tiny_overrides(root, "learns")), echo=printed.append)
    # the per-step validation covers train.eval_batches, the summary eval.final_val_batches: both say so
    assert "step 60: train loss" in capsys.readouterr().out.split("(first 1,024 val tokens)")[-2]
    assert "validation     loss" in printed[-1] and "bits per byte (first 4 batches: 1,024 tokens" in printed[-1]
    run_dir = root / "runs" / "learns"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "loss.png", "tokenizer"):
        assert (run_dir / name).exists(), name
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 61))
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-5:]) / 5
    assert first == pytest.approx(math.log(257), abs=0.3)  # an untrained model is near uniform
    assert last < first - 1.5, (first, last)  # it learns
    vals = [r for r in records if "val_bpb" in r]
    assert [r["step"] for r in vals] == [20, 40, 60] and vals[-1]["val_bpb"] < vals[0]["val_bpb"]
    for key in ("tokens", "lr", "grad_norm", "tok_per_s"):
        assert key in records[-1]
    assert records[-1]["tokens"] == 60 * 8 * 32
    assert summary["steps"] == 60 and summary["val_bpb"] < math.log2(257)
    assert json.loads((run_dir / "summary.json").read_text())["val_bpb"] == summary["val_bpb"]
    loaded = load_run(run_dir, which="last")
    assert loaded.step == 60 and loaded.tokenizer.vocab_size == 257
    assert loaded.cfg.model.d_model == 32


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(root):
    from stlm.data import prepare_data

    cfg = compose_config(tiny_overrides(root, "nan", "train.checkpoint_every=10", "train.eval_every=10"))
    run_dir = create_run_dir(cfg)
    trainer = Trainer(cfg, run_dir, prepare_data(cfg.data, progress=False))
    trainer.model.register_forward_hook(nan_loss_after(25))
    with pytest.raises(TrainingDiverged, match=r"nan at step 26.*step-20"):
        trainer.fit()
    assert latest_checkpoint(run_dir / "checkpoints").name == "step-20"
    assert max(r["step"] for r in read_metrics(run_dir / "metrics.jsonl")) == 25
    good = load_run(run_dir, which="last").model
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_huge_learning_rate_diverges_with_a_clear_message(root):
    cfg = compose_config(tiny_overrides(root, "lr", "train.lr=1e30", "train.min_lr=1e29", "train.warmup_steps=0"))
    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        run_training(cfg, echo=lambda s: None)


def test_unwritable_run_directory_fails_before_any_work(root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = compose_config(tiny_overrides(tmp_path, "x", f"runs_dir={blocker}"))
    with pytest.raises(UserError, match="cannot write the run directory"):
        run_training(cfg, echo=lambda s: None)
    assert not (tmp_path / "cache").exists()  # no data was prepared


def test_a_run_whose_data_fails_leaves_no_folder(tmp_path):
    cfg = compose_config(tiny_overrides(tmp_path, "nodata", f"data.sources=[{{name:text,path:{tmp_path / 'missing.txt'}}}]"))
    with pytest.raises(UserError, match="missing.txt"):
        run_training(cfg, echo=lambda s: None)
    assert not (tmp_path / "runs" / "nodata").exists()  # so the same run_name can simply be retried


def test_existing_run_name_is_refused(root):
    cfg = compose_config(tiny_overrides(root, "twice"))
    (create_run_dir(cfg) / "checkpoints" / "step-5").mkdir()  # the run reached a checkpoint
    with pytest.raises(UserError, match="resume="):
        create_run_dir(cfg)


@pytest.mark.slow
def test_generate_command_streams_from_a_run(root, capsys):
    from stlm.cli import main

    run_dir = root / "runs" / "learns"
    if not run_dir.exists():
        run_training(compose_config(tiny_overrides(root, "learns")), echo=lambda s: None)
    args = ["generate", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "24", "--seed", "3",
            "--temperature", "0.9", "--top-p", "0.95"]
    outputs = []
    for _ in range(2):
        assert main(args) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("ROMEO:") and len(outputs[0]) > len("ROMEO:\n")
    assert main(["generate", str(root / "runs" / "missing"), "--prompt", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_load_run_of_an_incomplete_directory_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="config.yaml is missing"):
        load_run(tmp_path)


@pytest.mark.slow
def test_a_minutes_only_budget_stops_on_time_and_anneals_by_elapsed_time(root):
    cfg = compose_config(tiny_overrides(root, "minutes", "train.max_steps=null", "train.max_minutes=0.03",
                                        "train.eval_every=100000", "train.checkpoint_every=100000"))
    summary = run_training(cfg, echo=lambda s: None)
    records = read_metrics(root / "runs" / "minutes" / "metrics.jsonl")
    assert 1.8 <= records[-1]["elapsed_s"] < 10 and summary["steps"] == len(records)
    assert "val_loss" in records[-1]  # the last step is evaluated and checkpointed
    assert latest_checkpoint(root / "runs" / "minutes" / "checkpoints").name == f"step-{summary['steps']}"
    lrs = [r["lr"] for r in records if r["step"] > 5]  # after warmup the rate falls with time
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.5 * lrs[0]
