"""Evaluation results on disk and as tables: one JSON per task in `RUN/eval/<task>.json`, a
markdown table of every task evaluated so far (`RUN/eval/results.md`), and runs side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stlm.fileio import write_atomic

EVAL_DIR = "eval"
RESULTS_MD = "results.md"
HEADLINE = ("acc", "acc_norm", "bpb", "loss")  # metrics shown in tables, in this order


def write_json(path: Path, obj: Any) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(obj, indent=1) + "\n").encode())


def save_task(run_dir: Path, summary: dict) -> Path:
    path = Path(run_dir) / EVAL_DIR / f"{summary['task']}.json"
    write_json(path, summary)
    return path


def load_results(run_dir: Path) -> dict[str, dict]:
    """Every task's summary saved under `run_dir/eval`, by task name."""
    folder = Path(run_dir) / EVAL_DIR
    out = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(f.read_text())
        out[data.get("task", f.stem)] = data
    return out


def headline(summary: dict) -> list[tuple[str, float, float | None]]:
    """(metric, value, standard error) for the metrics a table shows."""
    return [(m, summary[m], summary.get(f"{m}_stderr")) for m in HEADLINE
            if isinstance(summary.get(m), (int, float))]


def fmt(metric: str, value: float, stderr: float | None = None) -> str:
    """Accuracies in percent (with their standard error), bits per byte and losses as they are."""
    if metric.startswith("acc"):
        return f"{100 * value:.1f}" + (f" ± {100 * stderr:.1f}" if stderr is not None else "")
    return f"{value:.4f}"


def results_table(results: dict[str, dict]) -> str:
    """One run's results: a markdown row per task and metric."""
    lines = ["| task | split | items | metric | value |", "|---|---|---:|---|---:|"]
    for task, s in results.items():
        for metric, value, stderr in headline(s):
            subset = f" (limit {s['limit']})" if s.get("limit") else ""
            lines.append(f"| {task} | {s.get('split', '')}{subset} | {s.get('n', '')} | {metric} | "
                         f"{fmt(metric, value, stderr)} |")
    lines.append("")
    lines.append("acc / acc_norm in percent ± standard error; acc_norm divides log-likelihoods by the "
                 "choice's characters (as lm-evaluation-harness); a tie at the top counts as wrong.")
    return "\n".join(lines)


def write_results_md(run_dir: Path) -> tuple[Path, str]:
    table = results_table(load_results(run_dir))
    path = Path(run_dir) / EVAL_DIR / RESULTS_MD
    write_atomic(path, f"# Evaluation of {Path(run_dir).name}\n\n{table}\n".encode())
    return path, table


def comparison_table(runs: dict[str, dict[str, dict]], summaries: dict[str, dict]) -> str:
    """Markdown: a row per (task, metric), a column per run; then training summary numbers."""
    names = list(runs)
    lines = [f"| task | metric | {' | '.join(names)} |", "|---|---|" + "---:|" * len(names)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for name, res in runs.items():
        for task, s in res.items():
            for metric, value, stderr in headline(s):
                rows.setdefault((task, metric), {})[name] = fmt(metric, value, stderr)
    for (task, metric), cells in sorted(rows.items()):
        lines.append(f"| {task} | {metric} | {' | '.join(cells.get(n, '-') for n in names)} |")
    keys = [k for k in ("model", "parameters", "tokens", "steps", "val_loss", "val_bpb", "train_seconds")
            if any(k in s for s in summaries.values())]
    for k in keys:
        cells = [summaries.get(n, {}).get(k, "-") for n in names]
        cells = [f"{c:,}" if isinstance(c, int) else f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells]
        lines.append(f"| training | {k} | {' | '.join(cells)} |")
    return "\n".join(lines)
