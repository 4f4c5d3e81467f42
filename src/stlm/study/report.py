"""A study's outputs: results.json (everything), results.md (the table) and results.png
(training loss curves; BLiMP and held-out bits per byte against parameters). Files are written
to a temporary name and renamed, so a reader never sees half a table."""

from __future__ import annotations

import json
from pathlib import Path

from stlm.fileio import atomic_output, write_atomic

JSON_FILE, TABLE_FILE, PLOT_FILE = "results.json", "results.md", "results.png"


def _pct(task: dict | None, spread: float | None = None) -> str:
    """An accuracy in percent, ± its stderr (one seed) or its spread over seeds."""
    if not task:
        return "n/a"
    error = spread if spread is not None else task.get("acc_stderr")
    return f"{100 * task['acc']:.1f}" + (f" ± {100 * error:.1f}" if error is not None else "")


def _with_spread(value: float, spread: float | None, digits: int, scale: float = 1.0) -> str:
    text = f"{scale * value:.{digits}f}"
    return text + (f" ± {scale * spread:.{digits}f}" if spread is not None else "")


def format_table(results: dict) -> str:
    """The markdown table of a study's rows."""
    head = ("| model | variant | tied | params (trained) | params (V=32000) | tokens | val bpb | "
            "WikiText-2 test bpb | BLiMP % | BLiMP filtered % | grammar local % | grammar structural % |")
    p = results["plan"]
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results["rows"]:
        tiers, sd = r["grammar"]["per_tier"], r.get("spread", {})
        local, structural = (_with_spread(tiers.get(t, float("nan")), sd.get(f"grammar_{t}"), 1, 100)
                             for t in ("local", "structural"))
        capped = "*" if r["tokens"] < p["tokens"] else ""
        lines.append(
            f"| {r['model']} | {r['role']} | {'yes' if r['tied'] else 'no'} | {r['parameters']:,} | "
            f"{r['paper_parameters']:,} | {r['tokens']:,}{capped} | {_with_spread(r['val_bpb'], sd.get('val_bpb'), 4)} | "
            f"{_with_spread(r['test_bpb'], sd.get('test_bpb'), 4)} | {_pct(r['blimp'], sd.get('blimp'))} | "
            f"{_pct(r['blimp_filtered'], sd.get('blimp_filtered'))} | {local} | {structural} |")
    blimp = "all 1,000" if p["blimp_limit"] is None else f"{p['blimp_limit']}"
    rows = " with 32,000 embedding rows" if results["paper_vocab"] else ""
    seeds = results.get("seeds", [results["seed"]])
    if len(seeds) > 1:
        seed_text = (f"seeds {', '.join(map(str, seeds))} (each cell: mean over the {len(seeds)} seeds "
                     "± their sample standard deviation)")
        blimp_error = "mean over seeds ± spread"
    else:
        seed_text, blimp_error = f"seed {seeds[0]}", "mean of paradigm accuracies ± stderr"
    lines += ["", f"Budget {p['budget']:g}: {p['tokens']:,} planned training tokens per model "
              f"({p['steps']} steps of {p['batch_size']} x {p['context']}), {seed_text}, "
              f"BPE {results['bpe_vocab']}{rows}. BLiMP: {blimp} pairs per paradigm ({blimp_error}); "
              f"grammar: {p['grammar_pairs']} pairs per paradigm; "
              f"WikiText-2 test: {p['test_tokens']:,} tokens. A tie between the two sentences of a pair "
              "counts as wrong."]
    if any(r["tokens"] < p["tokens"] for r in results["rows"]):
        lines.append('Tokens marked "*": the per-model time cap stopped that run before the planned '
                     "tokens, so it is not comparable with the others (rerun on an idle or faster "
                     "machine, or lower --budget).")
    return "\n".join(lines)


def training_curves(ax, rows: list[dict], name: str, point) -> None:
    """One line per row from its run's metrics.jsonl: `point(row, record) -> (x, y)`."""
    from stlm.runs import METRICS_FILE
    from stlm.train.metrics import read_metrics

    for r in rows:
        metrics = Path(r["run_dir"]) / METRICS_FILE
        records = read_metrics(metrics) if metrics.exists() else []
        curve = [point(r, m) for m in records if "loss" in m]
        if curve:
            ax.plot(*zip(*curve), label=r[name], linewidth=1)
    ax.legend(fontsize=7)


def figure(n_panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, n_panels, figsize=(16, 4.5))


def save_figure(fig, axes, out: Path) -> None:
    """Grid every panel and write results.png (temporary name, then rename)."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(out / PLOT_FILE) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot(results: dict, out: Path) -> None:
    rows = results["rows"]
    fig, axes = figure(3)
    training_curves(axes[0], rows, "model", lambda r, m: (m["tokens"], m["loss"]))
    axes[0].set(xlabel="training tokens", ylabel="train loss (nats/token)", title="training loss")
    panels = ((axes[1], "blimp", "BLiMP accuracy (%)"), (axes[2], "test_bpb", "WikiText-2 test bpb"))
    for ax, key, label in panels:
        for r in rows:
            y = 100 * r["blimp"]["acc"] if key == "blimp" else r[key]
            ax.scatter(r["parameters"], y, marker="s" if r["tied"] else "o")
            ax.annotate(r["model"], (r["parameters"], y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set(xlabel="parameters (trained)", ylabel=label, title=f"{label} vs size (square: tied)")
    if rows:
        axes[1].axhline(50, color="grey", linewidth=0.8, linestyle="--")
    save_figure(fig, axes, out)


def write_report(results: dict, out: Path, table_of=None, plot_to=None) -> str:
    """Write results.json, results.md and results.png into `out`; return the table. A study
    with other columns passes its own `table_of(results)` and `plot_to(results, out)`."""
    out.mkdir(parents=True, exist_ok=True)
    table = (table_of or format_table)(results)
    write_atomic(out / JSON_FILE, json.dumps(results, indent=1).encode())
    write_atomic(out / TABLE_FILE, (f"# {results['study']} study\n\n{table}\n").encode())
    (plot_to or plot)(results, out)
    return table


def format_knob_table(results: dict) -> str:
    """The markdown table of a training-knob study (stlm.study.knobs)."""
    lines = ["| variant | what changes | tokens | val loss | val bpb | minimal pairs % | local % | structural % | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        tiers = r["pairs_per_tier"]
        pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['role']} | {r['tokens']:,} | {r['val_loss']:.4f} | {r['val_bpb']:.4f} | "
                     f"{pct(r['pairs'])} | {pct(tiers.get('local'))} | {pct(tiers.get('structural'))} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", f"Budget {results['budget']:g}: {results['tokens_per_model']:,} planned training tokens per "
              f"student model, one seed ({results['seed']}); validation over the whole held-out split of "
              "the built-in grammar corpus; minimal pairs: the grammar's, 100 per paradigm."]
    return "\n".join(lines)


def plot_knobs(results: dict, out: Path) -> None:
    rows = results["rows"]
    fig, axes = figure(2)
    training_curves(axes[0], rows, "model", lambda r, m: (m["tokens"], m["loss"]))
    axes[0].set(xlabel="training tokens", ylabel="train loss (nats/token)", title="training loss", yscale="log")
    axes[1].barh([r["model"] for r in rows], [r["val_bpb"] for r in rows])
    bpb = [r["val_bpb"] for r in rows]
    axes[1].set(xlabel="validation bits per byte (lower is better)", title=f"{results['study']} study",
                xlim=(min(bpb) * 0.95, max(bpb) * 1.01))
    axes[1].invert_yaxis()
    save_figure(fig, axes, out)


def write_knob_report(results: dict, out: Path) -> str:
    """Write results.json, results.md and results.png of a knob study into `out`; return the table."""
    return write_report(results, out, table_of=format_knob_table, plot_to=plot_knobs)
