"""Continuing a run: its saved config plus a few budget and cadence overrides.

`stlm train resume=runs/NAME [train.max_steps=2000 ...]` reloads runs/NAME/config.yaml. Only the
keys in `RESUME_KEYS` may change, because anything else (model shape, tokenizer, data, optimizer)
would make the checkpoint mean something different. Extending the budget lengthens the
learning-rate schedule from the resumed step on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from stlm.config.loader import config_from_dict
from stlm.config.schema import RunConfig
from stlm.errors import ConfigError, UserError
from stlm.runs import read_config

RESUME_KEYS = ("train.max_steps", "train.max_tokens", "train.max_minutes", "train.eval_every",
               "train.eval_batches", "train.log_every", "train.checkpoint_every", "train.keep_last",
               "train.progress", "train.tracker", "train.tracker_project")


def resume_config(run_dir: Path, overrides: Sequence[str]) -> RunConfig:
    """The run's saved config with the allowed `overrides` applied (`resume=...` is skipped)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: run directory {run_dir} does not exist")
    saved = read_config(run_dir)
    changes = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key == "resume":
            continue
        if key not in RESUME_KEYS:
            raise UserError(f"cannot change '{key}' when resuming {run_dir} (the checkpoint was trained "
                            f"with the saved value); allowed overrides: {', '.join(RESUME_KEYS)}")
        changes.append(item.lstrip("+~"))
    merged = OmegaConf.merge(OmegaConf.structured(saved), OmegaConf.from_dotlist(changes))
    try:
        cfg = config_from_dict(OmegaConf.to_container(merged))
    except ConfigError as exc:
        raise UserError(f"bad resume override: {exc}") from exc
    cfg.resume = str(run_dir)
    return cfg
