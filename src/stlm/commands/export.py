"""`stlm export RUN OUT`: write a run as a transformers model folder (plain-Llama runs)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("out", help="new folder for the Hugging Face model")
    p.add_argument("--checkpoint", default="best", help="best, last or step-N (default: best)")


def run(args: argparse.Namespace) -> int:
    from stlm.hf.export import export_run

    out = export_run(args.run, args.out, which=args.checkpoint)
    print(f"wrote {out}: load it with transformers.AutoModelForCausalLM.from_pretrained('{out}')")
    return 0
