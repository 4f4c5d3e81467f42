"""`stlm export RUN OUT`: write a run as a transformers model folder (plain Llamas as
LlamaForCausalLM, every other architecture with its modeling code, for trust_remote_code=True)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("out", help="new folder for the Hugging Face model")
    p.add_argument("--checkpoint", default="best", help="best, last or step-N (default: best)")
    p.add_argument("--babylm", action="store_true",
                   help="BabyLM layout: OUT/main (the checkpoint) and OUT/chck_{N}M for each checkpoint "
                        "saved with train.babylm_checkpoints=true (push each as the branch of its name)")


def run(args: argparse.Namespace) -> int:
    from stlm.hf.export import export_run
    from stlm.hf.remote_code import ENTRY_FILE

    out = export_run(args.run, args.out, which=args.checkpoint, babylm=args.babylm)
    if args.babylm:
        names = sorted((p.name for p in out.iterdir()), key=lambda n: (n != "main", len(n), n))
        print(f"wrote {out}: {', '.join(names)}; upload each folder as the branch of its name, e.g. "
              f"huggingface-cli upload REPO {out}/chck_1M --revision chck_1M")
    else:
        trust = ", trust_remote_code=True" if (out / ENTRY_FILE).is_file() else ""
        print(f"wrote {out}: load it with transformers.AutoModelForCausalLM.from_pretrained('{out}'{trust})")
    return 0
