"""Self-speculative decoding (LayerSkip): acceptance rate and decoding speed-up.

Trains the quickstart model on the built-in grammar twice with the same seed and tokens, once
plainly (`tiny-1m`) and once for early exit (`tiny-1m-layerskip`: layer dropout and early-exit
losses), then decodes the same prompts greedily with the full model and self-speculatively with
each exit layer, checking that the outputs are identical and printing the acceptance rate and
tokens/s against full greedy decoding measured in the same run (median of --repeats).

    python benchmarks/self_speculative.py                    # quickstart budget (1,200 steps each)
    python benchmarks/self_speculative.py train.max_steps=300
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from stlm.config import compose_config
from stlm.generate import generate_ids
from stlm.runs import load_run
from stlm.speculative import self_speculative_greedy
from stlm.train import run_training

PROMPTS = ["Once upon a time", "The little dog", "Lily saw a big", "One day, the girl"]


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides applied to both models")
    parser.add_argument("--tokens", type=int, default=96, help="new tokens per prompt")
    parser.add_argument("--draft", type=int, default=4, help="draft tokens per round")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one decoding stream: threads only add synchronisation
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("tiny-1m", "tiny-1m-layerskip"):
            cfg = compose_config([f"runs_dir={tmp}", f"model={preset}", "train.progress=false",
                                  "eval.minimal_pairs=false", *args.overrides])
            summary = run_training(cfg, echo=lambda s: None)
            run = load_run(summary["run_dir"], "last")
            model, tok = run.model, run.tokenizer
            prompts = [[tok.eot_id] + tok.encode(p) for p in PROMPTS]
            full, t_full = timed(lambda: [generate_ids(model, p, args.tokens, temperature=0, stop_id=None)
                                          for p in prompts], args.repeats)
            print(f"{preset}: val bpb {summary['val_bpb']:.4f}; full greedy {len(prompts) * args.tokens / t_full:,.0f} tok/s")
            for exit_layer in range(1, model.n_layers):
                runs, t_spec = timed(lambda: [self_speculative_greedy(model, p, args.tokens, exit_layer,
                                                                      args.draft) for p in prompts], args.repeats)
                same = all(out == ref for (out, _), ref in zip(runs, full))
                drafted = sum(s.drafted for _, s in runs)
                accepted = sum(s.accepted for _, s in runs)
                print(f"  exit after layer {exit_layer}: acceptance {accepted / drafted:6.1%}, "
                      f"speed-up {t_full / t_spec:4.2f}x, output identical to full greedy: {same}", flush=True)


if __name__ == "__main__":
    main()
