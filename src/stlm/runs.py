"""The run directory: what a training run leaves behind, and loading it back.

    runs/<name>/
      config.yaml      the resolved RunConfig
      tokenizer/       the tokenizer (`Tokenizer.save`)
      metrics.jsonl    one JSON object per logged step
      checkpoints/     step-N/ folders and the `best` pointer (`stlm.train.checkpoint`)
      summary.json     final numbers
      loss.png         training and validation loss curves
      run_info.json    resolved config, git commit, package versions, machine (per session)
      wandb/ | tensorboard/   the tracker's files, with train.tracker=wandb | tensorboard
      babylm/chck_{N}M/        BabyLM checkpoints, with train.babylm_checkpoints=true

`load_run(path)` rebuilds the model from config.yaml and the tokenizer's vocabulary, then loads a
checkpoint's weights; evaluation, generation and export all start from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from stlm.config.loader import config_from_dict, to_yaml
from stlm.config.schema import RunConfig, trained_context
from stlm.errors import ConfigError, UserError
from stlm.fileio import write_atomic

CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
SUMMARY_FILE = "summary.json"
LOSS_PLOT = "loss.png"


def default_run_name(cfg: RunConfig) -> str:
    return f"{cfg.model.name}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(cfg: RunConfig) -> Path:
    """Make `runs_dir/<name>/` and write config.yaml there; fails early if it cannot be written."""
    root = Path(cfg.runs_dir)
    name = cfg.run_name or default_run_name(cfg)
    run_dir = root / name
    if cfg.run_name is None:  # two runs started in the same second get distinct folders
        n = 2
        while run_dir.exists():
            run_dir, n = root / f"{name}-{n}", n + 1
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run directory {run_dir} already exists; continue it with "
                        f"`stlm train resume={run_dir}` or pick another run_name=")
    try:
        (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        write_config(run_dir, cfg)
    except OSError as exc:
        raise UserError(f"cannot write the run directory {run_dir} ({exc.strerror or exc}); "
                        "set runs_dir= to a writable folder") from exc
    return run_dir


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    write_atomic(run_dir / CONFIG_FILE, to_yaml(cfg))


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise UserError(f"{run_dir} is not a run directory: {path} is missing")
    try:
        data = yaml.safe_load(path.read_text())
        return config_from_dict(data or {})
    except (yaml.YAMLError, ConfigError) as exc:
        raise UserError(f"{path} is not a valid run config: {exc}") from exc


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: object  # stlm.tokenizers.base.Tokenizer
    cfg: RunConfig
    run_dir: Path
    checkpoint: Path
    step: int

    @property
    def context(self) -> int:
        """The sequence length the model was trained on (at most its context length)."""
        return trained_context(self.cfg)


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """`best` (lowest validation loss; the latest if none was evaluated), `last`, or `step-N`."""
    from stlm.train.checkpoint import best_checkpoint, latest_checkpoint

    ckpt_dir = Path(run_dir) / CHECKPOINTS_DIR
    if which == "best":
        found = best_checkpoint(ckpt_dir) or latest_checkpoint(ckpt_dir)
    elif which == "last":
        found = latest_checkpoint(ckpt_dir)
    else:
        found = ckpt_dir / which if (ckpt_dir / which).is_dir() else None
        if found is None:
            raise UserError(f"checkpoint '{which}' not found in {ckpt_dir}; use best, last or step-N")
    if found is None:
        raise UserError(f"{run_dir} has no checkpoint yet ({ckpt_dir} holds no step-N folder); "
                        "train it first or resume it with `stlm train resume=...`")
    return found


def load_tokenizer_dir(run_dir: Path):
    from stlm.tokenizers import load_tokenizer

    path = Path(run_dir) / TOKENIZER_DIR
    if not path.is_dir():
        raise UserError(f"{run_dir} is incomplete: the tokenizer folder {path} is missing")
    return load_tokenizer(path)


def load_run(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """The model (eval mode, on `device`), tokenizer and config of a run directory."""
    from stlm.models import build_model
    from stlm.train.checkpoint import checkpoint_step, load_weights

    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    cfg = read_config(run_dir)
    tokenizer = load_tokenizer_dir(run_dir)
    checkpoint = find_checkpoint(run_dir, which)
    try:
        model = build_model(cfg.model, tokenizer.vocab_size)
    except ValueError as exc:
        raise UserError(f"cannot build the model of {run_dir}: {exc}") from exc
    load_weights(model, checkpoint)
    model.to(device).eval()
    return LoadedRun(model, tokenizer, cfg, run_dir, checkpoint, checkpoint_step(checkpoint))
