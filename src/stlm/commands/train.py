"""`stlm train [overrides]`: train a model; no arguments trains the default tiny model on the
built-in grammar corpus on CPU and prints a summary. `stlm train resume=runs/NAME` continues a run
from its latest checkpoint (only budget and cadence keys may be overridden then)."""

from __future__ import annotations

import argparse

TAKES_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*",
                   help="Hydra overrides, e.g. model=tiny-3m train.max_steps=2000, or resume=runs/NAME")


def run(args: argparse.Namespace) -> int:
    from stlm.config.loader import compose_config
    from stlm.train import run_training
    from stlm.train.resume import resume_config

    cfg = compose_config(args.overrides)
    if cfg.resume:
        cfg = resume_config(cfg.resume, args.overrides)
    run_training(cfg)
    return 0
