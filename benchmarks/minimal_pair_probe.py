"""Which grammatical paradigms need depth? A 1-layer model against the default quickstart model.

Both train with the same seed on the same tokens (batches are a function of seed and step) of
the built-in grammar corpus; their per-paradigm minimal-pair accuracies are printed side by side
with the difference. Local paradigms (decidable from neighbouring words) should be learned by
both; structural ones (agreement across a phrase or clause, ...) should separate them.

    python benchmarks/minimal_pair_probe.py                    # quickstart settings
    python benchmarks/minimal_pair_probe.py train.max_steps=800
"""

from __future__ import annotations

import argparse
import tempfile

from stlm.config import compose_config
from stlm.eval.minimal_pairs import PairResults, format_pair_table
from stlm.train import run_training

GAP = 0.10  # a difference of at least 10 points counts as a separation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides applied to both models")
    parser.add_argument("--runs-dir", default=None, help="keep the two runs here (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs_dir or tmp
        results, params = {}, {}
        for label, extra in (("1-layer", ["model.n_layers=1", "model.name=tiny-1m-1layer"]), ("default", [])):
            cfg = compose_config([f"runs_dir={runs_dir}", "train.progress=false", *args.overrides, *extra])
            summary = run_training(cfg, echo=lambda s: None)
            results[label] = PairResults.from_dict(summary["minimal_pairs"])
            params[label] = summary["parameters"]
            print(f"{label}: {cfg.model.n_layers} layers, {summary['parameters']:,} parameters, "
                  f"{summary['tokens']:,} tokens, {summary['train_seconds']:.0f} s, val bpb "
                  f"{summary['val_bpb']:.4f}, pairs {100 * results[label].overall:.1f}%", flush=True)
    deep, shallow = results["default"], results["1-layer"]
    print(format_pair_table(deep, shallow, labels=("default", "1-layer")))
    for tier in sorted(deep.per_tier):
        print(f"  {tier:<38}{100 * deep.per_tier[tier]:9.1f}%{100 * shallow.per_tier[tier]:9.1f}%"
              f"{100 * (deep.per_tier[tier] - shallow.per_tier[tier]):+8.1f}")
    separated = [n for n, t in deep.tiers.items()
                 if t == "structural" and abs(deep.per_paradigm[n] - shallow.per_paradigm[n]) >= GAP]
    print(f"structural paradigms separated by >= {100 * GAP:.0f} points: {len(separated)} "
          f"({', '.join(sorted(separated)) or 'none'})")


if __name__ == "__main__":
    main()
