"""Resuming: a run killed with SIGKILL and resumed computes exactly the losses of an uninterrupted
run (same floats); leftover temporary checkpoints are ignored; incompatible changes are refused."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stlm.config import compose_config
from stlm.errors import UserError
from stlm.train import run_training
from stlm.train.checkpoint import latest_checkpoint
from stlm.train.metrics import read_metrics
from stlm.train.resume import resume_config
from test_train_loop import tiny_overrides

STEPS = ("train.max_steps=200",)


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")}


def start_and_kill(overrides: list[str], run_dir: Path, after_step: int) -> None:
    """Train in a subprocess; SIGKILL it once a checkpoint exists and the log is past `after_step`."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "stlm.cli", "train", *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            metrics = run_dir / "metrics.jsonl"
            if latest_checkpoint(run_dir / "checkpoints") and metrics.exists() and \
                    max(losses(run_dir), default=0) >= after_step:
                break
            if proc.poll() is not None:
                pytest.fail(f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
        else:
            pytest.fail("no checkpoint appeared within 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_losses(tmp_path):
    reference = run_training(compose_config(tiny_overrides(tmp_path, "whole", *STEPS)), echo=lambda s: None)
    expected = losses(Path(reference["run_dir"]))

    run_dir = tmp_path / "runs" / "killed"
    start_and_kill(tiny_overrides(tmp_path, "killed", *STEPS), run_dir, after_step=25)
    resumed_from = latest_checkpoint(run_dir / "checkpoints")
    step = int(resumed_from.name.split("-")[1])
    assert step < 200
    (run_dir / "checkpoints" / ".tmp-step-999").mkdir()  # a checkpoint that was never completed
    run_training(resume_config(run_dir, ["train.progress=false"]), echo=lambda s: None)

    got = losses(run_dir)
    assert sorted(got) == list(range(1, 201))  # no step logged twice, none missing
    after = [s for s in got if s > step]
    assert after and [got[s] for s in after] == [expected[s] for s in after]  # exactly equal floats
    assert got == expected
    assert not (run_dir / "checkpoints" / ".tmp-step-999").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    run_training(compose_config(tiny_overrides(root, "done", "train.max_steps=20")), echo=lambda s: None)
    return root / "runs" / "done"


def test_resume_allows_only_budget_and_cadence_overrides(finished_run):
    with pytest.raises(UserError, match="cannot change 'model.d_model'.*train.max_steps"):
        resume_config(finished_run, ["model.d_model=64"])
    cfg = resume_config(finished_run, [f"resume={finished_run}", "train.max_steps=30", "train.log_every=5"])
    assert cfg.train.max_steps == 30 and cfg.model.d_model == 32 and cfg.resume == str(finished_run)


def test_resume_with_a_changed_model_shape_is_a_clear_error(finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "done")  # leave the shared run unchanged
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("d_model: 32", "d_model: 48"))
    with pytest.raises(UserError, match="does not fit the model built from the run's config"):
        run_training(resume_config(run_dir, ["train.max_steps=30"]), echo=lambda s: None)


def test_resume_without_a_run_or_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resume_config(tmp_path / "nope", [])
