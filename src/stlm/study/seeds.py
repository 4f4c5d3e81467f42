"""Several seeds per model: one study row per model holding the mean of each metric over its
seeds and the sample standard deviation (the spread that says whether a gap between two models
is larger than a change of seed). With one seed the row is that run's own, unchanged."""

from __future__ import annotations

import statistics
from typing import Callable

# metric -> how to read it from one run's row (None where the run has no such number)
METRICS: dict[str, Callable[[dict], float | None]] = {
    "val_bpb": lambda r: r["val_bpb"],
    "test_bpb": lambda r: r["test_bpb"],
    "blimp": lambda r: r["blimp"]["acc"] if r.get("blimp") else None,
    "blimp_filtered": lambda r: r["blimp_filtered"]["acc"] if r.get("blimp_filtered") else None,
    "grammar_local": lambda r: r["grammar"]["per_tier"].get("local"),
    "grammar_structural": lambda r: r["grammar"]["per_tier"].get("structural"),
}


def study_seeds(first: int, n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"--seeds must be >= 1, got {n}")
    return [first + i for i in range(n)]


def mean_and_spread(runs: list[dict]) -> dict:
    """One row for a model's runs (one per seed): the first run's fields, with every metric
    replaced by its mean; `spread` holds each metric's sample standard deviation and `per_seed`
    the runs themselves. The fewest tokens any seed trained on is kept (a capped run shows)."""
    if len(runs) == 1:
        return runs[0]
    row = {**runs[0], "seeds": [r["seed"] for r in runs], "per_seed": runs,
           "tokens": min(r["tokens"] for r in runs), "steps": min(r["steps"] for r in runs),
           "train_seconds": sum(r["train_seconds"] for r in runs)}
    spread = {}
    for key, read in METRICS.items():
        values = [read(r) for r in runs]
        if any(v is None for v in values):
            continue
        mean, sd = statistics.fmean(values), statistics.stdev(values)
        spread[key] = sd
        if key in ("val_bpb", "test_bpb"):
            row[key] = mean
        elif key.startswith("grammar_"):
            row["grammar"] = {**row["grammar"],
                              "per_tier": {**row["grammar"]["per_tier"], key.split("_", 1)[1]: mean}}
        else:  # a BLiMP task: its mean accuracy; the per-seed stderr no longer applies
            row[key] = {**row[key], "acc": mean, "acc_stderr": None}
    row["spread"] = spread
    return row
