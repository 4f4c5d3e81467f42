"""Evaluation results on disk and as tables: one JSON per task in `RUN/eval/<task>.json`, a
markdown table of every task evaluated so far (`RUN/eval/results.md`), and runs side by side.

Every number carries where it came from: the checkpoint (and its step), the `--limit` subset and,
for bits per byte, the validation data. A table never puts numbers of different provenance side
by side without saying so: results.md flags tasks from different checkpoints of one run, and the
comparison of runs flags rows whose limits, subset seeds, validation data or context differ, and
runs whose tasks come from different checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stlm.errors import UserError
from stlm.fileio import write_atomic
from stlm.output_paths import rescue

EVAL_DIR = "eval"
RESULTS_MD = "results.md"
HEADLINE = ("acc", "acc_norm", "bpb", "loss")  # metrics shown in tables, in this order


def write_json(path: Path, obj: Any) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(obj, indent=1) + "\n").encode())


def save_task(run_dir: Path, summary: dict, saved: list[Path] = (), not_run: list[str] = ()) -> Path:
    """Write `RUN/eval/<task>.json`. If that fails, the summary goes to the temporary folder and
    the UserError says where, which results were `saved` before and which tasks did not run."""
    path = Path(run_dir) / EVAL_DIR / f"{summary['task']}.json"
    try:
        write_json(path, summary)
    except OSError as exc:
        data = (json.dumps(summary, indent=1) + "\n").encode()
        kept = rescue(f"{summary['task']}.json", data)
        where = f"they are saved in {kept}" if kept else f"they are: {json.dumps(summary)}"
        before = f"; saved before: {', '.join(map(str, saved))}" if saved else ""
        rest = f"; not run: {', '.join(not_run)}" if not_run else ""
        raise UserError(f"cannot write {path} ({exc.strerror or exc}): the {summary['task']} results "
                        f"are not lost, {where}{before}{rest}") from None
    return path


def load_results(run_dir: Path) -> dict[str, dict]:
    """Every task's summary saved under `run_dir/eval`, by task name."""
    folder = Path(run_dir) / EVAL_DIR
    out = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{f} is not a readable results file ({exc}); delete it and rerun "
                            f"`stlm eval` for that task") from None
        if not isinstance(data, dict):
            raise UserError(f"{f} is not a results file (not a JSON object); delete it")
        out[data.get("task", f.stem)] = data
    return out


def provenance(summary: dict) -> str:
    """Where a number came from, e.g. `step-60, limit 100 (seed 1234), data shakespeare`."""
    parts = [str(summary.get("checkpoint", "checkpoint ?"))]
    if summary.get("limit"):
        seed = summary.get("subset_seed")
        parts.append(f"limit {summary['limit']}" + (f" (seed {seed})" if seed is not None else ""))
    if summary.get("data"):
        parts.append(f"data {summary['data']}")
    return ", ".join(parts)


def mixed_checkpoints(run_dir: Path) -> str:
    """'' when every saved result of the run comes from one checkpoint; else which ones."""
    return _checkpoints(load_results(run_dir))


def _checkpoints(results: dict[str, dict]) -> str:
    by_ckpt: dict[str, list[str]] = {}
    for task, s in results.items():
        by_ckpt.setdefault(str(s.get("checkpoint", "?")), []).append(task)
    if len(by_ckpt) < 2:
        return ""
    return "; ".join(f"{c}: {', '.join(tasks)}" for c, tasks in sorted(by_ckpt.items()))


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
    lines = ["| task | split | items | metric | value | from |", "|---|---|---:|---|---:|---|"]
    for task, s in results.items():
        for metric, value, stderr in headline(s):
            lines.append(f"| {task} | {s.get('split', '')} | {s.get('n', '')} | {metric} | "
                         f"{fmt(metric, value, stderr)} | {provenance(s)} |")
    lines.append("")
    lines.append("acc / acc_norm in percent ± standard error; acc_norm divides log-likelihoods by the "
                 "choice's characters (as lm-evaluation-harness); a tie at the top counts as wrong. "
                 "from: the checkpoint and --limit subset each number was computed on.")
    long = {t: s["long_continuations"] for t, s in results.items() if s.get("long_continuations")}
    if long:
        lines.append("Items with a choice longer than the context window (scored in several windows, "
                     "see docs/adding_a_task.md): " + ", ".join(f"{t} {n:,}" for t, n in long.items()) + ".")
    mixed = _checkpoints(results)
    if mixed:
        lines.append(f"**Warning: these results come from different checkpoints ({mixed}); they are not "
                     f"comparable with each other.**")
    return "\n".join(lines)


def write_results_md(run_dir: Path) -> tuple[Path, str]:
    table = results_table(load_results(run_dir))
    path = Path(run_dir) / EVAL_DIR / RESULTS_MD
    write_atomic(path, f"# Evaluation of {Path(run_dir).name}\n\n{table}\n".encode())
    return path, table


COMPARABLE = ("split", "limit", "subset_seed", "data", "context")  # what must agree across a row


def comparison_warnings(runs: dict[str, dict[str, dict]]) -> list[str]:
    """Why numbers in one row (a task, across runs) or one column (a run, across tasks) are not
    comparable: different limits, subset seeds, validation data, splits or contexts; a run whose
    tasks were evaluated at different checkpoints."""
    out = []
    for task in sorted({t for res in runs.values() for t in res}):
        having = {n: res[task] for n, res in runs.items() if task in res}
        for key in COMPARABLE:
            values = {n: s.get(key) for n, s in having.items()}
            if len(set(map(str, values.values()))) > 1:
                out.append(f"{task}: different {key} ({', '.join(f'{n} {v}' for n, v in values.items())})")
    for name, res in runs.items():
        mixed = _checkpoints(res)
        if mixed:
            out.append(f"{name}: tasks from different checkpoints ({mixed})")
    return out


def comparison_table(runs: dict[str, dict[str, dict]], summaries: dict[str, dict]) -> str:
    """Markdown: a row per (task, metric), a column per run; the checkpoint of each run's results;
    then training summary numbers; then what makes any of them not comparable."""
    names = list(runs)
    lines = [f"| task | metric | {' | '.join(names)} |", "|---|---|" + "---:|" * len(names)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    flagged = {w.split(":")[0] for w in comparison_warnings(runs)}
    for name, res in runs.items():
        for task, s in res.items():
            for metric, value, stderr in headline(s):
                rows.setdefault((task, metric), {})[name] = fmt(metric, value, stderr)
    for (task, metric), cells in sorted(rows.items()):
        label = f"{task} ⚠" if task in flagged else task
        lines.append(f"| {label} | {metric} | {' | '.join(cells.get(n, '-') for n in names)} |")
    if rows:
        ckpts = [", ".join(sorted({str(s.get("checkpoint", "?")) for s in runs[n].values()})) or "-" for n in names]
        lines.append(f"| eval | checkpoint | {' | '.join(ckpts)} |")
        limits = [", ".join(f"{t} {s['limit']}" for t, s in runs[n].items() if s.get("limit")) or "-" for n in names]
        if any(cell != "-" for cell in limits):
            lines.append(f"| eval | --limit | {' | '.join(limits)} |")
    keys = [k for k in ("model", "compression", "parameters", "nonzero_parameters", "model_bytes", "tokens",
                        "steps", "val_loss", "val_bpb", "minimal_pairs_acc", "train_seconds")
            if any(k in s for s in summaries.values())]
    for k in keys:
        cells = [summaries.get(n, {}).get(k, "-") for n in names]
        cells = [c["method"] if isinstance(c, dict) and "method" in c else c for c in cells]
        cells = [f"{c:,}" if isinstance(c, int) else f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells]
        lines.append(f"| training | {k} | {' | '.join(cells)} |")
    datas = {str(s.get("data")) for s in summaries.values()}
    warnings = comparison_warnings(runs)
    if len(datas) > 1 and "val_loss" in keys:
        warnings.append(f"training: val_loss / val_bpb are on different validation data ({', '.join(sorted(datas))})")
    if warnings:
        lines.append("")
        lines.append("**⚠ Not comparable side by side:**")
        lines += [f"- {w}" for w in warnings]
    return "\n".join(lines)
