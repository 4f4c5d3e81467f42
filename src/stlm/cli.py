"""The `stlm` command: one subcommand per job; each lives in `stlm.commands.<name>`.

Config-driven subcommands (`train`, `prepare`, `params`, `schedule`) take Hydra overrides such as
`model=tiny-3m train.lr=1e-3`. Errors that the user can fix print as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stlm.config.loader import GROUPS, list_choices

COMMANDS = {
    "train": "Train a model (no arguments: the default tiny model on the built-in corpus).",
    "eval": "Zero-shot evaluation of a run (bits-per-byte, BLiMP, HellaSwag, ...).",
    "generate": "Sample text from a trained run with the KV cache.",
    "prepare": "Tokenize a corpus into cached shards without training.",
    "params": "Parameters per component and FLOPs per token of a model config.",
    "schedule": "Print and plot the learning-rate and dropout curves of a config (no training).",
    "report": "Compare evaluated runs side by side (table and plots).",
    "study": "Run a predefined multi-model study (e.g. `stlm study sllama`).",
    "export": "Write a run as a Hugging Face transformers model folder.",
    "import": "Turn a transformers LlamaForCausalLM folder or a Llama GGUF file into an stlm run directory.",
    "compress": "Prune, drop layers, quantise or factorise a trained run into a new run.",
    "distill-cache": "Write a distillation run's top-k teacher log-probs to disk before training.",
}
# commands whose module name differs (`import` is a keyword; module names have no hyphen)
MODULES = {"import": "import_hf", "distill-cache": "distill_cache"}


def _overrides_help() -> str:
    lines = ["Hydra overrides, e.g. model=tiny-3m train.lr=1e-3. Presets:"]
    for group in GROUPS:
        try:
            choices = list_choices(group)
        except FileNotFoundError:
            continue
        if choices:
            lines.append(f"  {group}: {', '.join(choices)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stlm", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"stlm {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"stlm.commands.{MODULES.get(name, name)}")
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=getattr(module, "EPILOG", None) or (
                               _overrides_help() if getattr(module, "TAKES_OVERRIDES", False) else None))
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from stlm import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    from stlm.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except UserError as exc:  # the one root (ConfigError included)
        print(f"stlm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stlm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
