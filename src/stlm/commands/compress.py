"""`stlm compress RUN --method M [options] --out NEW_RUN`: prune, drop layers, quantise or factorise
a trained run into a new, ordinary run directory (evaluate, generate, report and compress it again
like any other run). Prints and records parameters, bytes on disk, bits per byte and the built-in
minimal pairs before and after."""

from __future__ import annotations

import argparse


def _epilog() -> str:
    from stlm.compress.methods import METHODS
    lines = ["methods:"]
    lines += [f"  {m.name:<13}{m.summary}" for m in METHODS.values()]
    lines += ["", "Chain methods by compressing a compressed run (quantisation last), e.g. neurons with",
              "--finetune-steps 200, then int8. See docs/compression.md."]
    return "\n".join(lines)


EPILOG = _epilog()


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stlm.compress.registry import OPTIONS

    p.add_argument("run", help="trained run directory (runs/<name>)")
    p.add_argument("--method", required=True, help="compression method (list below)")
    p.add_argument("--out", required=True, help="the new run directory (must not exist)")
    group = p.add_argument_group("method options (each method reads its own; defaults in brackets)")
    for name, (kind, default, text) in OPTIONS.items():
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                           help=f"{text} [{default}]")
    p.add_argument("--checkpoint", default="best", help="best | last | step-N (default best)")
    p.add_argument("--finetune-steps", type=int, default=0,
                   help="recovery fine-tuning steps on the run's training text after compressing (default 0)")
    p.add_argument("--finetune-lr", type=float, default=None,
                   help="fine-tuning learning rate (default: the run's train.min_lr)")
    p.add_argument("--calib-batches", type=int, default=8,
                   help="training batches of calibration text for heads, neurons, drop-layers (default 8)")
    p.add_argument("--pairs", type=int, default=None,
                   help="minimal pairs per paradigm in the before/after evaluation (default: the run's "
                        "eval.pairs_per_paradigm)")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the run's)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stlm.compress.pipeline import CompressRequest, compress_run
    from stlm.compress.registry import OPTIONS
    from stlm.errors import UserError

    if args.pairs is not None and args.pairs < 1:
        raise UserError(f"--pairs must be >= 1, got {args.pairs}")
    options = {name: getattr(args, name) for name in OPTIONS}
    compress_run(CompressRequest(Path(args.run), args.method, Path(args.out), options, args.checkpoint,
                                 args.finetune_steps, args.finetune_lr, args.calib_batches, args.pairs,
                                 args.batch_size, args.device))
    return 0
