"""`stlm report RUN [RUN ...]`: evaluated runs side by side, as a markdown table and charts;
`stlm report SWEEP_DIR`: the points of a sweep (`stlm train -m`) in one table, with loss curves and
final metrics against the swept values (`stlm.train.sweep_report`).

Reads each run's RUN/eval/<task>.json (written by `stlm eval`) and RUN/summary.json (written by
training or `stlm compress`) when present, plus the size of its best checkpoint; writes report.md,
report.png (accuracy per task, bits per byte) and, when any run has BLiMP results, blimp.png (per
paradigm, beside the published models and humans). Each run's column says which checkpoint its
results come from; numbers that are not comparable (different --limit subsets, validation data or
context, or one run's tasks from different checkpoints) are flagged in the table and on stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stlm.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories (runs/<name>), or one sweep folder")
    p.add_argument("--out", help="folder for report.md and the charts (default: <parent of the first run>/report)")


def _labels(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _with_size(run_dir: Path, summary: dict) -> dict:
    """A summary with its best checkpoint's bytes on disk and its minimal-pair accuracy as rows
    (training summaries lack the first and nest the second), so original and compressed runs
    (`stlm compress`) compare line by line."""
    from stlm.runs import find_checkpoint
    from stlm.train.checkpoint import MODEL_FILE

    pairs = summary.get("minimal_pairs")
    if isinstance(pairs, dict) and "minimal_pairs_acc" not in summary:
        summary["minimal_pairs_acc"] = pairs["overall"]
    if "model_bytes" not in summary:
        try:
            summary["model_bytes"] = (find_checkpoint(run_dir) / MODEL_FILE).stat().st_size
        except (UserError, OSError):
            pass
    return summary


def run(args: argparse.Namespace) -> int:
    import sys

    from stlm.eval.output import comparison_table, comparison_warnings, load_results
    from stlm.eval.plots import blimp_chart, compare_chart
    from stlm.output_paths import writable_folder
    from stlm.runs import SUMMARY_FILE
    from stlm.fileio import write_atomic

    from stlm.train.sweep import SWEEP_FILE

    paths = [Path(r) for r in args.runs]
    if len(paths) == 1 and (paths[0] / SWEEP_FILE).is_file():
        from stlm.train.sweep_report import write_sweep_report

        table, written = write_sweep_report(paths[0], Path(args.out) if args.out else None)
        print(table)
        print(f"\n(saved {', '.join(map(str, written))})")
        return 0
    for p in paths:
        if not p.is_dir():
            raise UserError(f"run directory {p} does not exist")
    labels = _labels(paths)
    results = {label: load_results(p) for label, p in zip(labels, paths)}
    summaries = {}
    for label, p in zip(labels, paths):
        if (p / SUMMARY_FILE).is_file():
            try:
                summary = json.loads((p / SUMMARY_FILE).read_text(encoding="utf-8"))
            except ValueError as exc:
                raise UserError(f"{p / SUMMARY_FILE} is damaged ({exc}); move it away to report "
                                f"the run's evaluation results only") from None
            summaries[label] = _with_size(p, summary)
    if not any(results.values()) and not summaries:
        raise UserError(f"nothing to report: none of {', '.join(map(str, paths))} has eval/*.json or "
                        f"{SUMMARY_FILE}; run `stlm eval RUN --tasks ...` first")
    out = writable_folder(Path(args.out) if args.out else paths[0].parent / "report", "the report",
                          "choose a writable folder with --out")
    table = comparison_table(results, summaries)
    for warning in comparison_warnings(results):
        print(f"stlm report: warning: not comparable: {warning}", file=sys.stderr)
    print(table)
    written = [out / "report.md"]
    try:
        write_atomic(out / "report.md", f"# stlm report\n\nruns: {', '.join(map(str, paths))}\n\n{table}\n".encode())
        if any(results.values()):
            written.append(compare_chart(results, out / "report.png"))
        blimp = {label: res["blimp"] for label, res in results.items() if "blimp" in res}
        if blimp:
            written.append(blimp_chart(blimp, out / "blimp.png"))
    except OSError as exc:
        raise UserError(f"cannot write the report in {out} ({exc.strerror or exc}); the table is printed "
                        f"above; choose another folder with --out") from None
    print(f"\n(saved {', '.join(map(str, written))})")
    return 0
