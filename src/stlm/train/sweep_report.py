"""A sweep's points gathered into one table and two charts (`stlm report SWEEP_DIR`).

- sweep.md: a row per point: its swept values, parameters, tokens, final train and validation loss,
  validation bits per byte, and the headline metric of every task `stlm eval` wrote for it;
- loss_curves.png: training (thin) and validation (markers) loss against tokens, one colour per point;
- sweep.png: the final validation loss against each swept key's values, one line per combination
  of the other keys (numeric values on a numeric axis, logarithmic when they span 10x or more).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stlm.errors import UserError
from stlm.eval.output import fmt, headline, load_results
from stlm.runs import METRICS_FILE, SUMMARY_FILE
from stlm.tokenizers.base import write_atomic
from stlm.train.metrics import read_metrics
from stlm.train.sweep import read_sweep


def gather(sweep_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep record and, per point that trained, its values, summary, metrics and eval results."""
    sweep = read_sweep(sweep_dir)
    rows = []
    for point in sweep["points"]:
        run = Path(sweep_dir) / point["run"]
        if not (run / SUMMARY_FILE).is_file():
            continue
        values = dict(o.lstrip("+~").split("=", 1) for o in point["overrides"])
        rows.append({"run": point["run"], "values": values,
                     "summary": json.loads((run / SUMMARY_FILE).read_text()),
                     "metrics": read_metrics(run / METRICS_FILE) if (run / METRICS_FILE).is_file() else [],
                     "eval": load_results(run)})
    if not rows:
        raise UserError(f"nothing to report: no point of the sweep {sweep_dir} has finished training "
                        f"({SUMMARY_FILE} missing in each)")
    return sweep, rows


def _final_train_loss(row: dict[str, Any]) -> float | None:
    losses = [r["loss"] for r in row["metrics"] if "loss" in r]
    return losses[-1] if losses else None


def sweep_table(sweep: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    keys = list(sweep["swept"])
    tasks = sorted({(t, headline(s)[0][0]) for r in rows for t, s in r["eval"].items() if headline(s)})
    head = [*keys, "parameters", "tokens", "train loss", "val loss", "val bpb", *(f"{t} {m}" for t, m in tasks)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(keys) + "---:|" * (len(head) - len(keys))]
    for r in rows:
        s, train = r["summary"], _final_train_loss(r)
        cells = [r["values"].get(k, "") for k in keys]
        cells += [f"{s.get('parameters', 0):,}", f"{s.get('tokens', 0):,}",
                  f"{train:.4f}" if train is not None else "-", f"{s['val_loss']:.4f}", f"{s['val_bpb']:.4f}"]
        for task, metric in tasks:
            res = r["eval"].get(task)
            cells.append(fmt(metric, res[metric], res.get(f"{metric}_stderr")) if res and metric in res else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def loss_curves(rows: list[dict[str, Any]], out: Path) -> Path:
    from stlm.eval.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(rows):
        colour = f"C{i % 10}"
        train = [(m["tokens"], m["loss"]) for m in r["metrics"] if "loss" in m]
        val = [(m["tokens"], m["val_loss"]) for m in r["metrics"] if "val_loss" in m]
        if train:
            ax.plot(*zip(*train), color=colour, linewidth=0.8, alpha=0.6)
        if val:
            ax.plot(*zip(*val), "o-", color=colour, linewidth=1.5, label=r["run"])
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("training (thin) and validation (markers) loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def final_vs_swept(sweep: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> Path:
    from stlm.eval.plots import _pyplot

    plt = _pyplot()
    keys = list(sweep["swept"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        order = sweep["swept"][key]
        numbers = [_number(v) for v in order]
        numeric = all(n is not None for n in numbers)
        others = [k for k in keys if k != key]
        lines: dict[tuple, list[tuple[float, float]]] = {}
        for r in rows:
            x = _number(r["values"][key]) if numeric else order.index(r["values"][key])
            lines.setdefault(tuple(r["values"][k] for k in others), []).append((x, r["summary"]["val_loss"]))
        for label, points in lines.items():
            points.sort()
            ax.plot(*zip(*points), "o-", label=", ".join(f"{k}={v}" for k, v in zip(others, label)) or None)
        if numeric and min(numbers) > 0 and max(numbers) / min(numbers) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(order)), order)
        ax.set_xlabel(key)
        ax.set_ylabel("final validation loss")
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_sweep_report(sweep_dir: Path, out: Path | None = None) -> tuple[str, list[Path]]:
    """Write sweep.md, loss_curves.png and sweep.png (default: into SWEEP_DIR/report)."""
    sweep, rows = gather(sweep_dir)
    out = Path(out) if out else Path(sweep_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    table = sweep_table(sweep, rows)
    missing = [p["run"] for p in sweep["points"] if p["run"] not in {r["run"] for r in rows}]
    note = f"\n\nnot finished: {', '.join(missing)}\n" if missing else "\n"
    fixed = " ".join(sweep["fixed"]) or "(none)"
    write_atomic(out / "sweep.md", f"# sweep {sweep['name']}\n\nfixed overrides: {fixed}\n\n{table}{note}".encode())
    return table, [out / "sweep.md", loss_curves(rows, out / "loss_curves.png"),
                   final_vs_swept(sweep, rows, out / "sweep.png")]
