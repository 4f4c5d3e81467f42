"""Continuing a run: its saved config plus a few budget and cadence overrides.

`stlm train resume=runs/NAME [train.max_steps=2000 ...]` reloads runs/NAME/config.yaml. Only the
keys in `RESUME_KEYS` may change, because anything else (model shape, tokenizer, data, optimizer)
would make the checkpoint mean something different. `train.batch_size`, `train.grad_accum` and
`train.parallel` may change so that a run continues on another number of ranks (checkpoints hold
whole tensors); the trainer then checks that the global batch, batch_size x grad_accum x ranks,
is the saved one. Extending the budget of a run either plans
the learning-rate schedule over the new total (`train.continue_schedule=restart`, the default: after
a finished run the rate rises again, and the run says so) or keeps the saved plan and holds min_lr
beyond its end (`extend`). A run that stopped before its first checkpoint cannot be resumed: it is
started again under the same run_name, which reuses its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from stlm.config.loader import config_from_dict
from stlm.config.schema import RunConfig
from stlm.errors import ConfigError, UserError
from stlm.runs import CHECKPOINTS_DIR, CONFIG_FILE, read_config
from stlm.train.checkpoint import latest_checkpoint

RESUME_KEYS = ("train.max_steps", "train.max_tokens", "train.max_minutes", "train.eval_every",
               "train.eval_batches", "train.log_every", "train.checkpoint_every", "train.keep_last",
               "train.progress", "train.tracker", "train.tracker_project", "train.continue_schedule",
               "train.diverge_factor", "train.batch_size", "train.grad_accum", "train.parallel")


def resume_config(run_dir: Path, overrides: Sequence[str]) -> RunConfig:
    """The run's saved config with the allowed `overrides` applied (`resume=...` is skipped)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: run directory {run_dir} does not exist")
    if latest_checkpoint(run_dir / CHECKPOINTS_DIR) is None and (run_dir / CONFIG_FILE).exists():
        raise UserError(f"cannot resume {run_dir}: it has no checkpoint yet (the run stopped before its "
                        f"first one); start it again with `stlm train run_name={run_dir.name} "
                        f"runs_dir={run_dir.parent} ...` (the folder is reused) or delete the folder")
    saved = read_config(run_dir)
    if not saved.model.compression.is_empty:
        raise UserError(f"cannot resume {run_dir}: it is a `stlm compress` output; train it further with "
                        "`stlm compress ORIGINAL ... --finetune-steps N`")
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
