"""`stlm import SOURCE OUT_RUN`: a transformers LlamaForCausalLM folder, or a Llama GGUF file, as
an stlm run."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="a transformers model folder (config.json, weights, tokenizer), a Llama .gguf file, "
                        "or a folder holding one")
    p.add_argument("out", help="new run directory, e.g. runs/imported-NAME")
    p.add_argument("--gguf-file", metavar="NAME",
                   help="the .gguf file inside SOURCE to import, when the folder holds several")


def run(args: argparse.Namespace) -> int:
    import json

    from stlm.hf.import_llama import IMPORT_FILE, import_llama

    out = import_llama(args.source, args.out, gguf_file=args.gguf_file)
    info = json.loads((out / IMPORT_FILE).read_text())
    print(f"wrote {out}: {info['parameters']:,} parameters, logits equal to transformers' within "
          f"{info['max_logit_difference']:.1e}; evaluate it with `stlm eval {out}`, fine-tune it with "
          f"`stlm train init_from={out} data=...`")
    return 0
