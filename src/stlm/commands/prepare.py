"""`stlm prepare data=NAME [overrides]`: tokenize a corpus into cached shards, print a summary."""

from __future__ import annotations

import argparse
import time

TAKES_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*",
                   help="Hydra overrides, e.g. data=tinystories data.num_proc=4 data.sources.0.path=/copy")


def run(args: argparse.Namespace) -> int:
    from stlm.config.loader import compose_config
    from stlm.data.prepare import prepare_data

    cfg = compose_config(args.overrides).data
    start = time.perf_counter()
    data = prepare_data(cfg, progress=True)
    seconds = time.perf_counter() - start
    meta = data.meta
    tok = meta["tokenizer"]
    print(f"data {meta['name']}: {data.path}")
    print(f"  tokenizer {tok['kind']} ({tok['vocab_size']:,} ids, fingerprint {tok['fingerprint']}), "
          f"shards of {meta['dtype']}")
    print(f"  {'split':<6}{'tokens':>15}{'text MB':>12}{'bytes/token':>13}{'documents':>12}"
          f"{'bad UTF-8':>11}{'shards':>8}")
    for split, s in meta["splits"].items():
        print(f"  {split:<6}{s['tokens']:>15,}{s['bytes'] / 1e6:>12,.2f}{s['bytes'] / max(s['tokens'], 1):>13.2f}"
              f"{s['documents']:>12,}{s['invalid_utf8_replacements']:>11,}{len(s['shards']):>8}")
    if len(meta["splits"]["train"]["stage_tokens"]) > 1:
        print(f"  train tokens per stage: {', '.join(f'{n:,}' for n in meta['splits']['train']['stage_tokens'])}")
    print(f"  {seconds:.1f} s")
    return 0
