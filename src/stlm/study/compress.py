"""The compression study: one trained model through every `stlm compress` method at
several strengths; quality (bits per byte, built-in minimal pairs) against bytes on disk, and the
Pareto frontier of the two.

The model is the quickstart (`stlm train` with no arguments: tiny-1m on the built-in grammar,
1,200 steps at budget 1). Every compressed run is an ordinary run directory under `OUT/runs/`,
measured by `stlm compress` itself, so any point of the plot can be re-evaluated with `stlm eval`.
A killed study resumes: the base model and finished compressions are reused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Callable

import torch

from stlm.errors import UserError

# (name, method, options, fine-tuning steps at budget 1)
GRID: tuple[tuple[str, str, dict, int], ...] = (
    ("int8", "int8", {}, 0),
    ("int4-g32", "int4", {"group_size": 32}, 0),
    ("int4-g128", "int4", {"group_size": 128}, 0),
    ("magnitude-0.25", "magnitude", {"sparsity": 0.25}, 0),
    ("magnitude-0.5", "magnitude", {"sparsity": 0.5}, 0),
    ("magnitude-0.75", "magnitude", {"sparsity": 0.75}, 0),
    ("nm-2of4", "nm", {"n": 2, "m": 4}, 0),
    ("nm-1of4", "nm", {"n": 1, "m": 4}, 0),
    ("heads-0.25", "heads", {"fraction": 0.25}, 0),
    ("heads-0.5", "heads", {"fraction": 0.5}, 0),
    ("heads-0.5-ft", "heads", {"fraction": 0.5}, 100),
    ("neurons-0.25", "neurons", {"fraction": 0.25}, 0),
    ("neurons-0.5", "neurons", {"fraction": 0.5}, 0),
    ("neurons-0.75", "neurons", {"fraction": 0.75}, 0),
    ("neurons-0.5-ft", "neurons", {"fraction": 0.5}, 100),
    ("drop-1", "drop-layers", {"layers": 1}, 0),
    ("drop-2", "drop-layers", {"layers": 2}, 0),
    ("drop-1-ft", "drop-layers", {"layers": 1}, 100),
    ("svd-e0.9", "svd", {"energy": 0.9}, 0),
    ("svd-e0.75", "svd", {"energy": 0.75}, 0),
    ("svd-e0.5", "svd", {"energy": 0.5}, 0),
    ("svd-r32", "svd", {"rank": 32}, 0),
    ("svd-r32-ft", "svd", {"rank": 32}, 100),
)
BASE_STEPS = 1200  # the quickstart's steps at budget 1
PAIRS = 100  # minimal pairs per paradigm at budget 1 (at most 200)


@dataclasses.dataclass(frozen=True)
class CompressStudySettings:
    budget: float = 1.0
    out: Path = Path("runs/studies/compress")
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True


def base_config(s: CompressStudySettings):
    from stlm.config import compose_config

    steps = max(10, round(BASE_STEPS * s.budget))
    overrides = [f"runs_dir={s.out / 'runs'}", "run_name=base", f"train.max_steps={steps}",
                 f"train.max_minutes={max(8.0, 8 * s.budget)}", f"train.eval_every={steps}",
                 f"train.checkpoint_every={steps}", f"train.device={s.device}",
                 f"train.progress={str(s.progress).lower()}"]
    if s.threads:
        overrides.append(f"train.threads={s.threads}")
    return compose_config(overrides)


def train_base(s: CompressStudySettings, echo: Callable[[str], None]) -> Path:
    from stlm.runs import SUMMARY_FILE
    from stlm.train import run_training

    cfg = base_config(s)
    run_dir = s.out / "runs" / "base"
    if (run_dir / SUMMARY_FILE).exists():
        echo(f"base: already trained, reusing {run_dir}")
        return run_dir
    if run_dir.exists():
        raise UserError(f"{run_dir} holds an unfinished base run; delete it to start the study again")
    run_training(cfg, echo)
    return run_dir


def run_compress_study(s: CompressStudySettings, echo: Callable[[str], None] = print) -> dict:
    from stlm.compress.pipeline import CompressRequest, compress_run
    from stlm.runs import SUMMARY_FILE
    from stlm.fileio import write_atomic

    if s.threads:
        torch.set_num_threads(s.threads)
    pairs = max(5, min(200, round(PAIRS * s.budget)))
    echo(f"compression study, budget {s.budget:g}: base tiny-1m, {len(GRID)} compressions, {pairs} "
         f"minimal pairs per paradigm; output in {s.out}")
    base = train_base(s, echo)
    rows, before = [], None
    for i, (name, method, options, ft) in enumerate(GRID, 1):
        out = s.out / "runs" / name
        steps = round(ft * s.budget) if ft else 0
        if (out / SUMMARY_FILE).exists():
            summary = json.loads((out / SUMMARY_FILE).read_text())
        else:
            echo(f"[{i}/{len(GRID)}] {name}")
            summary = compress_run(CompressRequest(base, method, out, dict(options), checkpoint="last",
                                                   finetune_steps=steps, pairs=pairs, device=s.device,
                                                   before=before), echo)
        c = summary["compression"]
        before = before or c["before"]
        rows.append({"name": name, "method": method, "options": options, "finetune_steps": steps,
                     **{k: c["after"][k] for k in ("parameters", "nonzero_parameters", "model_bytes",
                                                   "val_bpb", "minimal_pairs", "minimal_pairs_tiers")},
                     "seconds": c["seconds"]})
    trained = json.loads((base / SUMMARY_FILE).read_text())
    results = {"study": "compress", "budget": s.budget, "pairs_per_paradigm": pairs,
               "base": {"run_dir": str(base), **before,
                        **{k: trained[k] for k in ("steps", "tokens", "train_seconds")}},
               "rows": rows, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "device": s.device}
    for row in rows:
        row["pareto"] = on_frontier(row, [results["base"], *rows])
    s.out.mkdir(parents=True, exist_ok=True)
    write_atomic(s.out / "results.json", (json.dumps(results, indent=1) + "\n").encode())
    table = format_table(results)
    write_atomic(s.out / "results.md", f"# Compression study\n\n{table}\n".encode())
    plot(results, s.out / "results.png")
    echo(table)
    return results


def on_frontier(row: dict, points: list[dict]) -> bool:
    """No other point is at most as large on disk and at most as high in bpb, and better in one."""
    return not any(p["model_bytes"] <= row["model_bytes"] and p["val_bpb"] <= row["val_bpb"]
                   and (p["model_bytes"] < row["model_bytes"] or p["val_bpb"] < row["val_bpb"])
                   for p in points)


def format_table(results: dict) -> str:
    b = results["base"]
    head = ("| run | method | fine-tune steps | parameters | non-zero | bytes on disk | x base | "
            "val bpb | delta bpb | minimal pairs % | local % | structural % | Pareto |")
    lines = [head, "|" + "---|" * 2 + "---:|" * 10 + "---|"]

    def line(name, method, ft, r, pareto):
        tiers = r["minimal_pairs_tiers"]
        return (f"| {name} | {method} | {ft} | {r['parameters']:,} | {r['nonzero_parameters']:,} | "
                f"{r['model_bytes']:,} | {r['model_bytes'] / b['model_bytes']:.3f} | {r['val_bpb']:.4f} | "
                f"{r['val_bpb'] - b['val_bpb']:+.4f} | {100 * r['minimal_pairs']:.1f} | "
                f"{100 * tiers.get('local', math.nan):.1f} | {100 * tiers.get('structural', math.nan):.1f} | "
                f"{pareto} |")

    lines.append(line("base", "-", 0, b, "yes"))
    lines += [line(r["name"], r["method"], r["finetune_steps"], r, "yes" if r["pareto"] else "")
              for r in results["rows"]]
    lines += ["", f"Budget {results['budget']:g}: base tiny-1m trained {b['steps']:,} steps "
              f"({b['tokens']:,} tokens, {b['train_seconds']:.0f} s); recovery fine-tuning uses batches of "
              f"the same size; {results['pairs_per_paradigm']} minimal pairs per "
              f"paradigm; bits per byte on the whole validation split; torch {results['torch']}, "
              f"{results['threads']} threads on {results['device']}. Pareto: no other run is both at most "
              "as large on disk and at most as high in bits per byte."]
    return "\n".join(lines)


COLORS = {"int8": "#1b9e77", "int4": "#66a61e", "magnitude": "#d95f02", "nm": "#e6ab02", "heads": "#7570b3",
          "neurons": "#e7298a", "drop-layers": "#a6761d", "svd": "#1f78b4"}


def plot(results: dict, path: Path) -> Path:
    import matplotlib.ticker  # noqa: F401  (loads matplotlib.ticker for the formatters)

    from stlm.eval.plots import _pyplot
    from stlm.fileio import write_atomic

    plt = _pyplot()
    matplotlib = plt.matplotlib
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    b, rows = results["base"], results["rows"]
    for ax, key, label in ((axes[0], "val_bpb", "validation bits per byte (lower is better)"),
                           (axes[1], "minimal_pairs", "built-in minimal pairs, accuracy")):
        ax.scatter([b["model_bytes"] / 1e6], [b[key]], marker="*", s=200, color="black", label="base",
                   zorder=3)
        for method, color in COLORS.items():
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            ax.scatter([r["model_bytes"] / 1e6 for r in mine], [r[key] for r in mine], color=color,
                       label=method, zorder=2,
                       edgecolors=["black" if r["finetune_steps"] else color for r in mine])
            for r in mine:
                ax.annotate(r["name"], (r["model_bytes"] / 1e6, r[key]), fontsize=6, alpha=0.7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("model.safetensors size (MB, log scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    front = sorted([b, *[r for r in rows if r["pareto"]]], key=lambda r: r["model_bytes"])
    axes[0].step([r["model_bytes"] / 1e6 for r in front], [r["val_bpb"] for r in front], where="post",
                 color="black", alpha=0.5, label="Pareto frontier")
    top = b["val_bpb"] * 1.3  # keep the frontier readable; name the points beyond it
    off = [r for r in rows if r["val_bpb"] > top]
    if off:
        axes[0].set_ylim(top=top)
        axes[0].text(0.02, 0.97, "off scale: " + ", ".join(f"{r['name']} ({r['val_bpb']:.2f})" for r in off),
                     transform=axes[0].transAxes, fontsize=7, va="top")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("stlm compress: quality against bytes on disk (black edge: with recovery fine-tuning)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path
