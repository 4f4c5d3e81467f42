"""`stlm generate RUN --prompt TEXT`: sample from a trained run with the KV cache, streaming the
text to stdout as it is produced and stopping at end-of-text."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory, e.g. runs/tiny-1m-grammar-20250101-120000")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="make sampling repeatable")
    p.add_argument("--checkpoint", default="best", help="best, last or step-N (default: best)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--speculative-exit", type=int, default=None, metavar="E",
                   help="greedy self-speculative decoding (LayerSkip): draft with the first E layers, "
                        "verify with the rest; needs --temperature 0")
    p.add_argument("--draft-tokens", type=int, default=4, help="draft tokens per round (default 4)")


def run(args: argparse.Namespace) -> int:
    from stlm.device import resolve_device
    from stlm.errors import UserError
    from stlm.generate import generate
    from stlm.runs import load_run

    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    if args.speculative_exit is not None and args.temperature != 0:
        raise UserError("--speculative-exit decodes greedily; add --temperature 0")
    loaded = load_run(args.run, which=args.checkpoint, device=resolve_device(args.device))
    if args.speculative_exit is not None:
        return _speculative(loaded, args)

    def stream(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    stream(args.prompt)
    generate(loaded.model, loaded.tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature,
             top_k=args.top_k, top_p=args.top_p, seed=args.seed, stream=stream, window=loaded.context)
    sys.stdout.write("\n")
    return 0


def _speculative(loaded, args: argparse.Namespace) -> int:
    from stlm.errors import UserError
    from stlm.speculative import self_speculative_greedy

    tok, n_layers = loaded.tokenizer, loaded.model.n_layers
    if not 0 <= args.speculative_exit <= n_layers or args.draft_tokens < 1:
        raise UserError(f"--speculative-exit must be in [0, {n_layers}] and --draft-tokens >= 1")
    ids, stats = self_speculative_greedy(loaded.model, [tok.eot_id] + tok.encode(args.prompt), args.max_new_tokens,
                                         args.speculative_exit, args.draft_tokens, stop_id=tok.eot_id)
    print(args.prompt + tok.decode(ids))
    print(f"[self-speculative: exit after layer {args.speculative_exit}, {stats.accepted}/{stats.drafted} "
          f"drafts accepted ({stats.acceptance_rate:.0%}), {stats.verify_passes} verify passes for "
          f"{stats.tokens} tokens]", file=sys.stderr)
    return 0
