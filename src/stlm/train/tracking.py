"""Experiment tracking: what a run records about itself, and optional trackers beside metrics.jsonl.

Local metrics (metrics.jsonl) are always written. `train.tracker` adds one tracker from a small
registry: `wandb` (Weights & Biases; `WANDB_MODE=offline` writes a local run that `wandb sync`
uploads later) or `tensorboard` (an event file under RUN/tensorboard). A new tracker is a class
registered with `@register_tracker("name")`: `__init__(run_dir, cfg, info)`, `log(record, step)`,
`close()`.

A tracker never stops training: if it fails to start or to log, one warning says so and the run
goes on with local metrics only (`SafeTracker`). An unknown tracker name or a missing package is a
configuration error, reported before training starts.

`run_info.json` in the run directory records the resolved config, the git commit of the code
(and whether the checkout had local changes), package versions and the machine; a resumed run
appends a session to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from stlm.config.schema import RunConfig
from stlm.errors import UserError
from stlm.registry import registrar

RUN_INFO_FILE = "run_info.json"
TENSORBOARD_DIR = "tensorboard"
PACKAGES = ("stlm", "torch", "numpy", "tokenizers", "tiktoken", "datasets", "safetensors", "hydra-core",
            "transformers", "lm-eval", "wandb", "tensorboard")


class TrackerWarning(UserWarning):
    """A tracker failed; training continues with local metrics only."""


TRACKERS: dict[str, Callable[..., Any]] = {}


register_tracker = registrar(TRACKERS)


# -- what a run records about itself ----------------------------------------------------------------

def git_commit(where: Path) -> dict[str, Any] | None:
    """The commit checked out at `where` and whether it has uncommitted changes (None: not git)."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()

        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(),
                            "processor": platform.machine(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    return info


def write_run_info(run_dir: Path, cfg: RunConfig, step: int) -> dict[str, Any]:
    """Write (or, on resume, extend) run_info.json; returns its content."""
    path = Path(run_dir) / RUN_INFO_FILE
    try:
        sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    except (ValueError, KeyError, TypeError):
        sessions = []
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_step": step,
               "code": git_commit(Path(__file__).resolve().parent), "packages": package_versions(),
               "machine": machine(), "command": sys.argv}
    info = {"run": Path(run_dir).name, "config": dataclasses.asdict(cfg), "sessions": [*sessions, session]}
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, path)
    return info


# -- trackers -------------------------------------------------------------------------------------

def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}


@register_tracker("wandb")
class WandbTracker:
    """A Weights & Biases run named after the run directory, its files inside it (RUN/wandb/);
    resuming the run directory continues the same W&B run."""

    def __init__(self, run_dir: Path, cfg: RunConfig, info: dict[str, Any]):
        import wandb

        run_id = "stlm-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(run_dir).name)[-58:]
        self.run = wandb.init(project=cfg.train.tracker_project, name=Path(run_dir).name, id=run_id,
                              resume="allow", dir=str(run_dir), config=info["config"],
                              notes=json.dumps(info["sessions"][-1]["code"]))
        self.run.config.update({"run_info": info["sessions"][-1]}, allow_val_change=True)

    def log(self, record: dict[str, Any], step: int) -> None:
        self.run.log(_numbers(record), step=step)

    def close(self) -> None:
        self.run.finish()


@register_tracker("tensorboard")
class TensorBoardTracker:
    """Scalars in an event file under RUN/tensorboard (`tensorboard --logdir runs`); the config
    and run info as text."""

    def __init__(self, run_dir: Path, cfg: RunConfig, info: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))
        self.writer.add_text("run_info", "```\n" + json.dumps(info, indent=2, default=str) + "\n```")

    def log(self, record: dict[str, Any], step: int) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class SafeTracker:
    """Forwards to a tracker; its first failure warns once and switches it off."""

    def __init__(self, name: str, tracker: Any):
        self.name, self.tracker = name, tracker

    def _call(self, what: str, *args: Any) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, what)(*args)
        except Exception as e:  # noqa: BLE001  (any tracker failure must not stop training)
            self.tracker = None
            warnings.warn(f"train.tracker={self.name} failed in {what} ({type(e).__name__}: {e}); "
                          f"training continues, metrics.jsonl has every step", TrackerWarning, stacklevel=2)

    def log(self, record: dict[str, Any], step: int) -> None:
        self._call("log", record, step)

    def close(self) -> None:
        self._call("close")


PACKAGE_OF = {"wandb": "wandb", "tensorboard": "tensorboard"}


def check_tracker(name: str) -> None:
    """Fail before training on an unknown tracker or a tracker whose package is missing."""
    if name == "none":
        return
    if name not in TRACKERS:
        raise UserError(f"train.tracker={name!r} is unknown; choose none or one of {', '.join(TRACKERS)}")
    package = PACKAGE_OF.get(name)
    if package is not None:
        import importlib.util

        if importlib.util.find_spec(package) is None:
            raise UserError(f"train.tracker={name} needs the {package} package: pip install 'stlm[track]'")


def start_tracking(cfg: RunConfig, run_dir: Path, step: int) -> SafeTracker | None:
    """Record run_info.json and start `cfg.train.tracker` (None when it is none)."""
    check_tracker(cfg.train.tracker)
    info = write_run_info(run_dir, cfg, step)
    if cfg.train.tracker == "none":
        return None
    safe = SafeTracker(cfg.train.tracker, None)
    try:
        safe.tracker = TRACKERS[cfg.train.tracker](Path(run_dir), cfg, info)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"train.tracker={cfg.train.tracker} could not start ({type(e).__name__}: {e}); "
                      f"training continues, metrics.jsonl has every step", TrackerWarning, stacklevel=2)
    return safe
