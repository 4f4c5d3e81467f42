"""Charts of evaluation results: BLiMP per paradigm beside the accuracies published with BLiMP
(n-gram, LSTM, Transformer-XL, GPT-2, humans; `reference/blimp_published.csv`), and runs compared
task by task."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

REFERENCES = {"ngram": "n-gram", "lstm": "LSTM", "txl": "Transformer-XL", "gpt2": "GPT-2", "human": "human"}
REFERENCE_STYLE = {"ngram": ("#bbbbbb", "s"), "lstm": ("#999999", "^"), "txl": ("#777777", "v"),
                   "gpt2": ("#444444", "D"), "human": ("#2a9d8f", "*")}


def published_blimp() -> dict[str, dict]:
    """paradigm -> {"phenomenon": ..., "ngram": acc, "lstm": ..., "txl": ..., "gpt2": ..., "human": ...}."""
    text = resources.files("stlm.eval").joinpath("reference/blimp_published.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["paradigm"]: {"phenomenon": r["phenomenon"], **{k: float(r[k]) for k in REFERENCES}}
            for r in rows}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def blimp_chart(runs: dict[str, dict], out: Path) -> Path:
    """Per-paradigm BLiMP accuracy of each run (label -> blimp summary) beside the published
    models and humans, paradigms grouped by phenomenon; chance is 50%."""
    plt = _pyplot()
    ref = published_blimp()
    order = sorted(ref, key=lambda p: (ref[p]["phenomenon"], p))
    fig, ax = plt.subplots(figsize=(10.5, 0.22 * len(order) + 1.6))
    y = list(range(len(order)))[::-1]
    for key, label in REFERENCES.items():
        color, marker = REFERENCE_STYLE[key]
        overall = sum(ref[p][key] for p in order) / len(order)
        ax.scatter([ref[p][key] for p in order], y, s=14, color=color, marker=marker,
                   label=f"{label} ({100 * overall:.1f})", zorder=2)
    colors = plt.get_cmap("tab10").colors
    for i, (name, summary) in enumerate(runs.items()):
        per = summary.get("groups", {}).get("paradigm", {})
        pts = [(per[p]["acc"], yy) for p, yy in zip(order, y) if p in per]
        ax.scatter([a for a, _ in pts], [yy for _, yy in pts], s=30, color=colors[(i + 3) % 10],
                   marker="o", label=f"{name} ({100 * summary['acc']:.1f})", zorder=3)
    ax.axvline(0.5, color="#cc0000", lw=0.8, ls=":", zorder=1)
    ax.set_yticks(y, [f"{p}  [{ref[p]['phenomenon']}]" for p in order], fontsize=6)
    ax.set_xlim(0, 1.01)
    ax.set_xlabel("accuracy (good sentence more probable); dotted: chance")
    ax.set_title("BLiMP per paradigm vs. published results (Warstadt et al., 2020)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="overall", title_fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def compare_chart(runs: dict[str, dict[str, dict]], out: Path) -> Path:
    """Grouped bars: each task's accuracy (acc, ± standard error) per run; bits per byte apart."""
    plt = _pyplot()
    acc_tasks = sorted({t for res in runs.values() for t, s in res.items() if isinstance(s.get("acc"), float)})
    bpb_tasks = sorted({t for res in runs.values() for t, s in res.items() if isinstance(s.get("bpb"), float)})
    panels = [("acc", acc_tasks)] * bool(acc_tasks) + [("bpb", bpb_tasks)] * bool(bpb_tasks)
    if not panels:
        raise ValueError("no accuracy or bits-per-byte results to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 + 1.2 * len(acc_tasks) + 2 * len(bpb_tasks), 4),
                             squeeze=False, gridspec_kw={"width_ratios": [max(1, len(t)) for _, t in panels]})
    width = 0.8 / len(runs)
    for ax, (metric, tasks) in zip(axes[0], panels):
        for i, (name, res) in enumerate(runs.items()):
            xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(tasks))]
            vals = [res.get(t, {}).get(metric, float("nan")) for t in tasks]
            errs = [res.get(t, {}).get(f"{metric}_stderr") or 0.0 for t in tasks]
            ax.bar(xs, vals, width, yerr=errs, label=name, capsize=2)
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("accuracy" if metric == "acc" else "bits per byte (lower is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
