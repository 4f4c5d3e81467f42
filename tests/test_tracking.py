"""Experiment tracking with the real libraries: a W&B offline run directory and a TensorBoard event
file hold the logged metrics, run_info.json records config, code, packages and machine, and a
tracker that fails never stops training."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from stlm.config import compose_config
from stlm.config.loader import ConfigError
from stlm.train import run_training
from stlm.train.metrics import read_metrics
from stlm.train.tracking import TRACKERS, TrackerWarning, register_tracker
from test_train_loop import tiny_overrides

pytestmark = pytest.mark.slow
SHORT = ("train.max_steps=6", "train.eval_every=3", "train.checkpoint_every=6", "eval.final_val_batches=2",
         "eval.sample_tokens=4")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("tracking")


@pytest.fixture(scope="module")
def train(root, small_data):
    def run(name, *extra):
        run_training(compose_config(tiny_overrides(root, name, *SHORT, *small_data, *extra)), echo=lambda s: None)
        run_dir = root / "runs" / name
        return run_dir, read_metrics(run_dir / "metrics.jsonl")
    return run


def _check_run_info(run_dir):
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["config"]["train"]["max_steps"] == 6 and info["config"]["model"]["d_model"] == 32
    (session,) = info["sessions"]
    assert re.fullmatch(r"[0-9a-f]{40}", session["code"]["commit"]) and isinstance(session["code"]["dirty"], bool)
    assert {"python", "torch", "numpy", "stlm"} <= set(session["packages"])
    assert session["machine"]["cpus"] >= 1 and session["from_step"] == 0


def test_wandb_offline_run(train, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": tmp_path / "wb",
                       "WANDB_CACHE_DIR": tmp_path / "wb", "WANDB_DATA_DIR": tmp_path / "wb"}.items():
        monkeypatch.setenv(var, str(value))
    run_dir, records = train("wb", "train.tracker=wandb")
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    data = log.read_bytes()  # W&B's record file: protobuf records with each value as JSON text
    for key in ("loss", "val_bpb", "grad_norm"):
        assert key.encode() in data
    assert json.dumps(records[-1]["loss"]).encode() in data and json.dumps(records[-1]["val_bpb"]).encode() in data
    assert b"tiny_overrides" not in data and b"grammar-2k" in data  # the resolved config went along


def test_tensorboard_event_file_and_run_info(train):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, records = train("tb", "train.tracker=tensorboard")
    _check_run_info(run_dir)
    (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [r["step"] for r in records] == list(range(1, 7))
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert [e.step for e in acc.Scalars("val_bpb")] == [3, 6]


@register_tracker("exploding")
class ExplodingTracker:
    """A real registered tracker whose `log` raises from the second call on."""

    def __init__(self, run_dir, cfg, info):
        self.calls = 0

    def log(self, record, step):
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("tracker service unreachable")

    def close(self):
        raise AssertionError("a tracker that failed is not called again")


def test_a_failing_tracker_warns_once_and_training_goes_on(train):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir, records = train("boom", "train.tracker=exploding")
    assert [r["step"] for r in records] == list(range(1, 7))
    assert (run_dir / "checkpoints" / "step-6").is_dir()
    ours = [w for w in caught if issubclass(w.category, TrackerWarning)]
    assert len(ours) == 1 and "ConnectionError: tracker service unreachable" in str(ours[0].message)


def test_unknown_tracker_is_a_config_error():
    assert {"wandb", "tensorboard"} <= set(TRACKERS)
    with pytest.raises(ConfigError, match="train.tracker.*valid choices: none, wandb, tensorboard"):
        compose_config(["train.tracker=mlflow"])
