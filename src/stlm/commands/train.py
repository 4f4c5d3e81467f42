"""`stlm train [overrides]`: train a model; no arguments trains the default tiny model on the
built-in grammar corpus on CPU and prints a summary. `stlm train resume=runs/NAME` continues a run
from its latest checkpoint (only budget and cadence keys may be overridden then).
`stlm train -m train.lr=1e-3,3e-3 model=tiny-1m,tiny-3m` trains every point of a Hydra multirun
grid as its own run under runs/<sweep-name>/ (`stlm.train.sweep`); `stlm report runs/<sweep-name>`
gathers them."""

from __future__ import annotations

import argparse

from stlm.errors import UserError

TAKES_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*",
                   help="Hydra overrides, e.g. model=tiny-3m train.max_steps=2000, or resume=runs/NAME")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="sweep: train every combination of comma-separated values (Hydra multirun)")
    p.add_argument("--sweep-name", help="with -m: the sweep folder under runs_dir (default sweep-<time>); "
                                        "rerunning a sweep by name skips its finished points")


def run(args: argparse.Namespace) -> int:
    from stlm.config.loader import compose_config
    from stlm.train import run_training
    from stlm.train.resume import resume_config

    if args.multirun:
        from stlm.train.sweep import read_sweep, run_sweep

        sweep_dir = run_sweep(args.overrides, args.sweep_name)
        failed = [p["run"] for p in read_sweep(sweep_dir)["points"] if p["status"] == "failed"]
        print(f"sweep {sweep_dir}: {'failed: ' + ', '.join(failed) if failed else 'all points done'}; "
              f"`stlm report {sweep_dir}` gathers them")
        return 1 if failed else 0
    if args.sweep_name:
        raise UserError("--sweep-name only applies with -m (multirun)")
    cfg = compose_config(args.overrides)
    if cfg.resume:
        cfg = resume_config(cfg.resume, args.overrides)
    run_training(cfg)
    return 0
