"""The two tasks that read a corpus rather than a benchmark file:

- `bpb`: bits per byte on the validation split of the run's own data (or of another data preset,
  `--data NAME`), always with the run's tokenizer, over the same context windows as training's
  validation (`stlm.eval.bpb`);
- `grammar`: accuracy on the built-in grammar's minimal pairs (`stlm.eval.minimal_pairs`).
Both return a summary shaped like the multiple-choice tasks' (task, headline metric, groups).
"""

from __future__ import annotations

import copy
import math
import time

import torch

from stlm.config.schema import TokenizerConfig, trained_context
from stlm.errors import UserError
from stlm.runs import TOKENIZER_DIR, LoadedRun


def run_bpb(run: LoadedRun, data: str | None, batch_size: int) -> dict:
    """Bits per byte of the run's model on the validation split of `data` (a preset name under
    `stlm/config/conf/data`, or None for the run's own data)."""
    from stlm.data import eval_batches
    from stlm.eval.bpb import bits_per_byte

    start = time.perf_counter()
    cfg, prepared = run_data(run, data)
    tok = run.tokenizer
    context = trained_context(run.cfg)
    device = next(run.model.parameters()).device
    result = bits_per_byte(run.model, eval_batches(prepared, "val", batch_size, context),
                           tok.byte_lengths(),
                           autocast_dtype=torch.bfloat16 if device.type == "cuda" else None)
    return {"task": "bpb", "split": "val", "data": cfg.name, "context": context, **result,
            "seconds": round(time.perf_counter() - start, 3)}


def run_data(run: LoadedRun, data: str | None = None):
    """(data config, prepared shards) of the run's own data (or the preset `data`), tokenized with
    the run's own tokenizer."""
    from stlm.config.loader import compose_config
    from stlm.data import prepare_data

    cfg = copy.deepcopy(run.cfg.data) if data is None else compose_config([f"data={data}"]).data
    tok = run.tokenizer
    cfg.tokenizer = TokenizerConfig(kind=tok.kind, vocab_size=tok.vocab_size,
                                    path=None if tok.kind == "byte" else str(run.run_dir / TOKENIZER_DIR),
                                    max_chunk_bytes=getattr(tok, "max_chunk_bytes", None))
    prepared = prepare_data(cfg)
    if prepared.tokenizer.fingerprint() != tok.fingerprint():
        raise UserError(f"the prepared data {prepared.path} was tokenized differently from the run's "
                        f"tokenizer; delete it to prepare it again")
    return cfg, prepared


def run_grammar(run: LoadedRun, per_paradigm: int | None, batch_size: int, pauses: int | None = None) -> dict:
    """Minimal-pair accuracy on the built-in grammar, per paradigm and tier; `per_paradigm`
    defaults to the run's `eval.pairs_per_paradigm`, the seed is the run's `eval.pairs_seed`."""
    from stlm.eval.minimal_pairs import grammar_pair_accuracy

    start = time.perf_counter()
    n = per_paradigm or run.cfg.eval.pairs_per_paradigm
    res = grammar_pair_accuracy(run.model, run.tokenizer, n, run.cfg.eval.pairs_seed, batch_size,
                                context_length=run.context, pauses=pauses)
    total = sum(res.counts.values())

    def entry(acc: float, count: int) -> dict:
        return {"n": count, "acc": acc, "acc_stderr": _proportion_stderr(acc, count)}

    tiers = {t: entry(a, sum(c for p, c in res.counts.items() if res.tiers[p] == t))
             for t, a in res.per_tier.items()}
    return {"task": "grammar", "split": f"seed {run.cfg.eval.pairs_seed}", "limit": per_paradigm,
            **entry(res.overall, total),
            "groups": {"paradigm": {p: entry(a, res.counts[p]) for p, a in sorted(res.per_paradigm.items())},
                       "tier": tiers},
            "seconds": round(time.perf_counter() - start, 3)}


def _proportion_stderr(p: float, n: int) -> float | None:
    """`metrics.mean_stderr` of n values that are 0 or 1 with mean p: sqrt(p (1 - p) / (n - 1))."""
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None
