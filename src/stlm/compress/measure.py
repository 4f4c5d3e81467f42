"""What every compression is judged by: parameters (total and non-zero), bytes on disk, bits per
byte on the run's validation split and accuracy on the built-in grammar's minimal pairs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stlm.compress.layers import QuantLinear
from stlm.runs import LoadedRun
from stlm.train.checkpoint import MODEL_FILE


@torch.no_grad()
def weight_counts(model: nn.Module) -> dict[str, int]:
    """Parameters (a shared tensor once; a quantised weight as its out x in values) and how many
    of them are non-zero."""
    total = nonzero = 0
    for p in model.parameters():  # deduplicated: tied and shared tensors count once
        total += p.numel()
        nonzero += int(torch.count_nonzero(p))
    for m in {id(m): m for m in model.modules() if isinstance(m, QuantLinear)}.values():
        total += m.in_features * m.out_features
        nonzero += int(torch.count_nonzero(m.codes()))
    return {"parameters": total, "nonzero_parameters": nonzero}


def model_bytes(checkpoint: Path) -> int:
    return (Path(checkpoint) / MODEL_FILE).stat().st_size


def measure(run: LoadedRun, pairs: int | None, batch_size: int) -> tuple[dict, dict, dict]:
    """(headline numbers, the bpb task summary, the grammar task summary) of a loaded run."""
    from stlm.eval.run_tasks import run_bpb, run_grammar

    bpb = run_bpb(run, None, batch_size)
    grammar = run_grammar(run, pairs, batch_size)
    numbers = {**weight_counts(run.model), "model_bytes": model_bytes(run.checkpoint),
               "val_loss": bpb["loss"], "val_bpb": bpb["bpb"], "minimal_pairs": grammar["acc"],
               "minimal_pairs_tiers": {t: g["acc"] for t, g in grammar["groups"]["tier"].items()}}
    return numbers, bpb, grammar


def format_numbers(before: dict, after: dict) -> str:
    """A before/after table for the terminal."""
    rows = [("parameters", "parameters", "{:,}"), ("non-zero parameters", "nonzero_parameters", "{:,}"),
            ("bytes on disk", "model_bytes", "{:,}"), ("bits per byte", "val_bpb", "{:.4f}"),
            ("minimal pairs", "minimal_pairs", "{:.1%}")]
    rows += [(f"  {tier}", None, tier) for tier in before["minimal_pairs_tiers"]]
    lines = [f"{'':<22}{'before':>14}{'after':>14}{'ratio':>9}"]
    for label, key, fmt in rows:
        if key is None:
            b, a = before["minimal_pairs_tiers"][fmt], after["minimal_pairs_tiers"].get(fmt, float("nan"))
            lines.append(f"{label:<22}{b:>14.1%}{a:>14.1%}")
            continue
        b, a = before[key], after[key]
        ratio = f"{a / b:>9.3f}" if b else ""
        lines.append(f"{label:<22}{fmt.format(b):>14}{fmt.format(a):>14}{ratio}")
    return "\n".join(lines)
