"""The byte study's outputs: results.json, results.md (the table) and results.png (training
bits per byte against bytes seen; held-out bpb against embedding + head parameters; BLiMP)."""

from __future__ import annotations

import math
from pathlib import Path

from stlm.study import report
from stlm.study.report import _pct, figure, save_figure, training_curves


def format_table(results: dict) -> str:
    head = ("| arm | variant | tokenizer (ids) | emb+head params | vs GPT-2 emb+head tied / untied | "
            "total params | train bytes | bytes/s | peak memory MB | val bpb | WikiText-2 test bpb | BLiMP % |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results["rows"]:
        ref = r["gpt2_reference"]
        cut = " / ".join(f"-{100 * (1 - r['embedding_head_parameters'] / ref[k]):.1f}%" for k in ("tied", "untied"))
        mem = r["memory"]
        mem_s = f"{mem['peak_mb']:,.0f}" + (f" (+{mem['step_mb']:,.0f})" if "step_mb" in mem else "")
        lines.append(
            f"| {r['arm']} | {r['role']} | {r['tokenizer']} ({r['vocab']:,}) | {r['embedding_head_parameters']:,} | "
            f"{cut} | {r['parameters']:,} | {r['train_bytes']:,}{'*' if r['capped'] else ''} | "
            f"{r['bytes_per_second']:,.0f} | {mem_s} | {r['val_bpb']:.4f} | {r['test_bpb']:.4f} | {_pct(r['blimp'])} |")
    p = results["plan"]
    blimp = "all 1,000" if p["blimp_limit"] is None else f"{p['blimp_limit']}"
    bpe = "GPT-2 BPE" if results["gpt2"] else f"BPE {results['bpe_vocab']:,} trained on the corpus"
    mem_kind = results["rows"][0]["memory"]["kind"] if results["rows"] else ""
    lines += ["", f"Budget {p['budget']:g}: {p['train_bytes']:,} planned training bytes per arm, batches of "
              f"{p['batch_size']} sequences (128 tokens; 512 for byte tokens), seed {results['seed']}, "
              f"{bpe} "
              f"(byte-pooled: its boundaries, chunks of at most {results['chunk_bytes']} bytes). "
              f"'vs GPT-2': the arm's embedding + head parameters against GPT-2's 50,257-id embedding "
              f"and head at the same width (d_model 128). Memory: {mem_kind} of two training steps in a "
              f"fresh process (in brackets: growth over the loaded model). BLiMP: {blimp} pairs per "
              f"paradigm (mean of paradigm accuracies ± stderr); WikiText-2 test: {p['test_bytes']:,} bytes."]
    if any(r["capped"] for r in results["rows"]):
        lines.append('Bytes marked "*": the per-arm time cap stopped that run early; it saw fewer bytes '
                     "than the others (rerun on an idle or faster machine, or lower --budget).")
    return "\n".join(lines)


def plot(results: dict, out: Path) -> None:
    rows = results["rows"]
    fig, axes = figure(3)
    training_curves(axes[0], rows, "arm", lambda r, m: (m["tokens"] * r["bytes_per_token"],
                                                        m["loss"] / math.log(2) / r["bytes_per_token"]))
    axes[0].set(xlabel="training bytes", ylabel="train loss (bits per byte, approx.)",
                title="training loss per byte")
    for r in rows:
        axes[1].scatter(r["embedding_head_parameters"], r["test_bpb"])
        axes[1].annotate(r["arm"], (r["embedding_head_parameters"], r["test_bpb"]), fontsize=7,
                         xytext=(3, 3), textcoords="offset points")
        y = 100 * r["blimp"]["acc"]
        axes[2].scatter(r["parameters"], y)
        axes[2].annotate(r["arm"], (r["parameters"], y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[1].set(xlabel="embedding + head parameters", ylabel="WikiText-2 test bpb", xscale="log",
                title="held-out bpb vs embedding + head size")
    axes[2].set(xlabel="total parameters", ylabel="BLiMP accuracy (%)", title="BLiMP vs size")
    axes[2].axhline(50, color="grey", linewidth=0.8, linestyle="--")
    save_figure(fig, axes, out)


def write_report(results: dict, out: Path) -> str:
    return report.write_report(results, out, table_of=format_table, plot_to=plot)
