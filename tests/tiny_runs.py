"""Helpers for end-to-end tests of a model preset: a 40-step run on the built-in grammar corpus
(byte tokens, tiny shapes, checkpoints at steps 20 and 40) and its resumption from step 20."""

from __future__ import annotations

import shutil
from pathlib import Path


def grammar_overrides(root: Path, name: str, model: str, *extra: str) -> list[str]:
    return [f"runs_dir={root / 'runs'}", f"run_name={name}", f"model={model}", "model.d_model=32",
            "model.n_layers=2", "model.n_heads=2", "model.d_ff=64", "model.context_length=32",
            "data.sources.0.max_documents=1500", "data.tokenizer.kind=byte", f"data.cache_dir={root / 'cache'}",
            "train.context_length=32", "train.batch_size=8", "train.max_steps=40", "train.warmup_steps=4",
            "train.lr=1e-2", "train.min_lr=1e-3", "train.log_every=5", "train.eval_every=20",
            "train.eval_batches=2", "train.checkpoint_every=20", "train.progress=false", "train.threads=1",
            "eval.final_val_batches=4", "eval.pairs_per_paradigm=10", "eval.sample_tokens=8", *extra]


def resume_from_step_20(run_dir: str | Path, copy: Path) -> dict[int, dict]:
    """Copy a finished 40-step run, drop its step-40 checkpoint, resume it: the metrics by step."""
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics
    from stlm.train.resume import resume_config

    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / "step-40")
    best = copy / "checkpoints" / "best"
    if best.exists() and "step-40" in best.read_text():
        best.unlink()
    run_training(resume_config(copy, []), echo=lambda s: None)
    return {r["step"]: r for r in read_metrics(copy / "metrics.jsonl")}
