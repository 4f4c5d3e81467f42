"""`stlm schedule [overrides]`: the learning-rate and dropout curves a config would train with,
printed as a table and plotted as a PNG, from the config alone (no data, no model, no training).

The values come from the trainer's own `Budget`, so they are the rates a run would use. A
minutes-only budget has no step count: pass `--steps N` (the steps expected in that time; steps
are then assumed to take equal time)."""

from __future__ import annotations

import argparse
from pathlib import Path

TAKES_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.schedule=wsd model.dropout=0.1")
    p.add_argument("--out", default="schedule.png", help="where to write the plot (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps to show (default: the config's budget; needed for minutes only)")
    p.add_argument("--world-size", type=int, default=1,
                   help="data-parallel ranks the run would use (a token budget depends on it)")
    p.add_argument("--rows", type=int, default=10, help="evenly spaced rows in the table besides boundaries")


def curves(cfg, steps: int | None = None, world_size: int = 1) -> tuple[list[float], list[float]]:
    """Per-step learning rate and dropout rate of the run `cfg` describes."""
    from stlm.errors import UserError
    from stlm.train.budget import plan_budget

    t = cfg.train
    context = t.context_length or cfg.model.context_length
    budget = plan_budget(t, t.batch_size * t.grad_accum * context * world_size)
    total = steps or budget.total_steps
    if total is None:
        raise UserError("a minutes-only budget has no step count; pass --steps N (the optimizer steps "
                        f"you expect in train.max_minutes={t.max_minutes})")
    if total < 1:
        raise UserError(f"--steps must be >= 1, got {total}")
    seconds = budget.max_seconds if budget.total_steps is None else 0.0
    elapsed = [seconds * s / total for s in range(total)] if seconds else [0.0] * total
    if budget.total_steps is not None and steps is not None:
        from dataclasses import replace

        budget = replace(budget, total_steps=steps)
    lrs = [budget.lr(s, elapsed[s]) for s in range(total)]
    drops = [budget.dropout(s, elapsed[s], cfg.model.dropout) for s in range(total)]
    return lrs, drops


def _table_steps(lrs: list[float], drops: list[float], rows: int, warmup: int) -> list[int]:
    """First and last step, the end of warmup, each curve's peak and the steps where it starts or
    stops being flat (WSD's cool-down, dropout switches and ramps), plus `rows` evenly spaced steps."""
    n = len(lrs)
    picks = {0, n - 1, min(warmup, n) - 1, min(warmup, n - 1)}
    picks |= {round(i * (n - 1) / rows) for i in range(rows + 1)} if rows > 0 else set()
    for curve in (lrs, drops):
        picks.add(max(range(n), key=curve.__getitem__))
        flat = [curve[s + 1] == curve[s] for s in range(n - 1)]
        picks |= {s for s in range(1, n - 1) if flat[s] != flat[s - 1]}
    return sorted(p for p in picks if 0 <= p < n)


def plot(lrs: list[float], drops: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_p) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    steps = range(1, len(lrs) + 1)
    ax_lr.plot(steps, lrs)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(title)
    ax_p.plot(steps, drops, color="tab:orange")
    ax_p.set_ylabel("dropout")
    ax_p.set_xlabel("optimizer step")
    ax_p.set_ylim(bottom=0)
    for ax in (ax_lr, ax_p):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from stlm.config.loader import compose_config

    cfg = compose_config(args.overrides)
    t = cfg.train
    lrs, drops = curves(cfg, args.steps, args.world_size)
    shape = t.schedule + (f" ({t.cooldown_shape} cool-down, last {t.cooldown_fraction:g})"
                          if t.schedule == "wsd" else "")
    dshape = t.dropout_schedule
    title = (f"lr: {shape}, warmup {t.warmup_steps}; dropout: {dshape.shape} of {cfg.model.dropout:g} "
             f"[{dshape.start:g}, {dshape.end:g}]")
    print(f"{len(lrs):,} optimizer steps; {title}")
    print(f"{'step':>8}  {'progress':>8}  {'lr':>12}  {'dropout':>8}")
    for s in _table_steps(lrs, drops, args.rows, t.warmup_steps):
        print(f"{s + 1:>8}  {s / len(lrs):>8.3f}  {lrs[s]:>12.6g}  {drops[s]:>8.4f}")
    out = Path(args.out)
    plot(lrs, drops, out, title)
    print(f"plot: {out}")
    return 0
