"""Training-knob studies: the same tiny model on the built-in grammar corpus, the same
tokens and seed, one knob changed per variant; compared on validation bits per byte and the
grammar's minimal pairs.

- `schedule`: learning-rate schedules (cosine, linear, WSD with linear and 1-sqrt cool-downs,
  inverse square root) and dropout schedules (none, constant, early, late, triangular).
- `optimizer`: AdamW against Muon at equal tokens, each at three learning rates (a short sweep,
  so that neither is compared at a bad rate).
- `distill`: a student trained alone against the same student distilled from a teacher (the
  same architecture trained on three times the tokens), forward KL at temperature 2.

The corpus needs no network and no shared data. Budget 1 is 400k tokens per model (about 40 s
of training each at the quickstart's idle 2-core speed; several minutes on a busy machine). A
killed study resumes: finished runs are reused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from stlm.config.loader import compose_config
from stlm.errors import UserError

TOKENS_PER_MODEL = 400_000  # at budget 1
SEED = 1337
BASE = ["model=tiny-1m", "data=grammar", "train=quickstart", "train.max_steps=null", "train.max_minutes=null",
        "train.log_every=5", "train.checkpoint_every=1000000", "train.keep_last=1", "eval.sample_tokens=16",
        "eval.pairs_per_paradigm=100", f"seed={SEED}"]


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    role: str
    overrides: tuple[str, ...] = ()
    tokens_factor: float = 1.0  # tokens relative to the study's per-model budget


def _wsd(shape: str) -> tuple[str, ...]:
    return ("train.schedule=wsd", "train.cooldown_fraction=0.2", f"train.cooldown_shape={shape}")


def _dropout(shape: str, *extra: str) -> tuple[str, ...]:
    return ("model.dropout=0.1", f"train.dropout_schedule.shape={shape}", *extra)


STUDY_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "schedule": (
        Variant("cosine", "lr: cosine (the default)"),
        Variant("linear", "lr: linear decay", ("train.schedule=linear",)),
        Variant("wsd_linear", "lr: WSD, last 20% linear", _wsd("linear")),
        Variant("wsd_1sqrt", "lr: WSD, last 20% 1-sqrt", _wsd("1-sqrt")),
        Variant("inverse_sqrt", "lr: inverse square root", ("train.schedule=inverse_sqrt",)),
        Variant("dropout_constant", "dropout 0.1 throughout", _dropout("constant")),
        Variant("dropout_early", "dropout 0.1 for the first 20%", _dropout("early", "train.dropout_schedule.end=0.2")),
        Variant("dropout_late", "dropout 0.1 for the last 50%", _dropout("late", "train.dropout_schedule.start=0.5")),
        Variant("dropout_triangular", "dropout 0 -> 0.1 -> 0", _dropout("triangular")),
    ),
    "optimizer": (
        *(Variant(f"adamw_lr{lr:g}", f"AdamW, peak lr {lr:g}", (f"train.lr={lr:g}", f"train.min_lr={lr / 10:g}"))
          for lr in (2e-3, 6e-3, 1.8e-2)),
        *(Variant(f"muon_lr{lr}", f"Muon lr {lr} (AdamW parts 6e-3)",
                  ("train.optimizer=muon", f"train.muon.lr={lr}")) for lr in ("0.01", "0.02", "0.04")),
    ),
    "distill": (
        Variant("teacher", "teacher: the same model, 3x the tokens", tokens_factor=3.0),
        Variant("student", "student alone"),
        Variant("student_distilled", "student + teacher, forward KL, T=2, weight 0.5",
                ("train.loss=distill", "train.distill.teacher={teacher}", "train.distill.weight=0.5",
                 "train.distill.temperature=2.0")),
    ),
}


def variant_config(study: str, v: Variant, budget: float, out: Path, device: str, threads: int | None,
                   progress: bool):
    """The run configuration of one variant (cosine, AdamW, no dropout unless it says otherwise)."""
    overrides = [o.replace("{teacher}", str((out / "runs" / "teacher").resolve())) for o in v.overrides]
    cfg = compose_config([*BASE, *overrides, f"train.device={device}", f"runs_dir={out / 'runs'}",
                          f"run_name={v.name}", f"train.progress={str(progress).lower()}"]
                         + ([f"train.threads={threads}"] if threads else []))
    tokens_per_step = cfg.train.batch_size * cfg.train.context_length
    steps = max(1, round(budget * TOKENS_PER_MODEL * v.tokens_factor / tokens_per_step))
    train = dataclasses.replace(cfg.train, max_steps=steps, warmup_steps=max(1, steps // 20),
                                eval_every=steps, checkpoint_every=steps)
    return dataclasses.replace(cfg, train=train)


def run_knob_study(study: str, budget: float, out: Path, device: str = "auto", threads: int | None = None,
                   progress: bool = True, echo: Callable[[str], None] = print) -> dict:
    """Train every variant of `study` and write results.{json,md,png} into `out`."""
    from stlm.study.report import write_knob_report
    from stlm.study.sllama import train_model

    if study not in STUDY_VARIANTS:
        raise UserError(f"unknown knob study '{study}'; valid choices: {', '.join(sorted(STUDY_VARIANTS))}")
    variants = STUDY_VARIANTS[study]
    echo(f"{study} study: {len(variants)} models, {budget * TOKENS_PER_MODEL:,.0f} tokens each (budget "
         f"{budget:g}), seed {SEED}; output in {out}")
    rows = []
    for i, v in enumerate(variants, 1):
        echo(f"[{i}/{len(variants)}] {v.name} ({v.role})")
        cfg = variant_config(study, v, budget, out, device, threads, progress)
        summary = train_model(cfg, lambda s: None)
        pairs = summary.get("minimal_pairs") or {}
        rows.append({"model": v.name, "role": v.role, "overrides": list(v.overrides),
                     "tokens": summary["tokens"], "steps": summary["steps"],
                     "train_seconds": summary["train_seconds"], "device": summary["device"],
                     "val_loss": summary["val_loss"], "val_bpb": summary["val_bpb"],
                     "pairs": pairs.get("overall"), "pairs_per_tier": pairs.get("per_tier", {}),
                     "run_dir": summary["run_dir"]})
        echo(f"    val bpb {summary['val_bpb']:.4f}, minimal pairs {100 * (pairs.get('overall') or 0):.1f}%")
    results = {"study": study, "budget": budget, "tokens_per_model": round(budget * TOKENS_PER_MODEL),
               "seed": SEED, "base": BASE, "torch": torch.__version__, "rows": rows}
    table = write_knob_report(results, out)
    echo(table)
    return results

