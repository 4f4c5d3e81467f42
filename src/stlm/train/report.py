"""After training: the final evaluation, summary.json, loss.png and the printed summary."""

from __future__ import annotations

import json
from typing import Any

from stlm.eval.minimal_pairs import PairResults, format_pair_table, grammar_pair_accuracy
from stlm.generate import generate
from stlm.models.params import count_parameters
from stlm.runs import LOSS_PLOT, METRICS_FILE, SUMMARY_FILE
from stlm.train.checkpoint import best_checkpoint
from stlm.train.metrics import plot_losses


def final_report(trainer, total_seconds: float) -> tuple[dict[str, Any], PairResults | None]:
    """Evaluate the trained model on the validation split (and the grammar's minimal pairs when
    training on the built-in corpus), sample text, and write summary.json and loss.png.

    `total_seconds` is the wall-clock time of every session of the run (training of earlier ones,
    all of this one), so it is never below `train_seconds`. `planned_steps` and `cut_short` say
    whether the minutes cap ended a step budget early."""
    cfg, model, tokenizer = trainer.cfg, trainer.model, trainer.data.tokenizer
    params = count_parameters(model, flops=False)
    val = trainer.validate(cfg.eval.final_val_batches)
    pairs = None
    if cfg.data.name == "grammar" and cfg.eval.minimal_pairs:
        pairs = grammar_pair_accuracy(model, tokenizer, cfg.eval.pairs_per_paradigm, cfg.eval.pairs_seed,
                                      cfg.eval.batch_size, context_length=trainer.context)
    sample = generate(model, tokenizer, cfg.eval.sample_prompt, cfg.eval.sample_tokens,
                      temperature=0.8, top_k=50, seed=cfg.seed, window=trainer.context)
    best = best_checkpoint(trainer.ckpt_dir)
    summary = {
        "run_dir": str(trainer.run_dir), "model": cfg.model.name, "data": cfg.data.name,
        "parameters": params.total, "non_embedding_parameters": params.non_embedding,
        "steps": trainer.state.step, "planned_steps": trainer.budget.total_steps,
        "cut_short": trainer.budget.cut_short(trainer.state.step), "tokens": trainer.state.tokens,
        "train_seconds": trainer.state.elapsed_s, "total_seconds": total_seconds,
        "device": str(trainer.rt.device), "world_size": trainer.rt.world_size,
        "val_loss": val["loss"], "val_bpb": val["bpb"], "val_tokens": val["tokens"], "val_bytes": val["bytes"],
        "val_batches": cfg.eval.final_val_batches,  # None: the whole validation split
        "best_checkpoint": best.name if best else None,
        "minimal_pairs": pairs.to_dict() if pairs else None,
        "sample": {"prompt": cfg.eval.sample_prompt, "text": sample},
    }
    (trainer.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    plot_losses(trainer.run_dir / METRICS_FILE, trainer.run_dir / LOSS_PLOT, title=trainer.run_dir.name)
    return summary, pairs


def _val_part(summary: dict[str, Any]) -> str:
    """Which validation data the final numbers cover (the per-step ones cover train.eval_batches)."""
    if summary.get("val_batches") is None:
        return "whole split"
    return f"first {summary['val_batches']} batches"


def format_summary(summary: dict[str, Any], pairs: PairResults | None) -> str:
    s = summary
    planned = f" of {s['planned_steps']:,} planned" if s.get("cut_short") else ""
    rows = [
        ("run", s["run_dir"]),
        ("model", f"{s['model']}: {s['parameters']:,} parameters ({s['non_embedding_parameters']:,} "
                  "non-embedding)"),
        ("trained", f"{s['tokens']:,} tokens in {s['steps']:,}{planned} steps, "
                    f"{s['train_seconds']:.0f} s ({s['total_seconds']:.0f} s with data preparation and "
                    f"evaluation) on {s['device']}"),
        ("validation", f"loss {s['val_loss']:.4f} nats/token, {s['val_bpb']:.4f} bits per byte "
                       f"({_val_part(s)}: {s['val_tokens']:,} tokens, {s['val_bytes']:,} bytes)"),
    ]
    if pairs is not None:
        tiers = ", ".join(f"{tier} {100 * acc:.1f}%" for tier, acc in pairs.per_tier.items())
        rows.append(("minimal pairs", f"{100 * pairs.overall:.1f}% overall ({tiers}; chance 50%)"))
    if s.get("cut_short"):
        rows.append(("warning", s["cut_short"]))
    lines = [f"{label:<15}{value}" for label, value in rows]
    if pairs is not None:
        lines.append(format_pair_table(pairs))
    lines.append(f"{'sample':<15}{s['sample']['prompt']}{s['sample']['text']}")
    return "\n".join(lines)
