"""`stlm distill-cache [overrides]`: build a run's teacher cache (`train.distill.cache`) without
training, e.g. before a `torchrun` launch (`--world-size`), so that every rank only reads it.

The overrides are the student run's own (train.loss=distill, train.distill.teacher, top_k, cache,
data, model, batch and budget settings): the cache holds exactly the windows that run will draw
(stlm.train.distill_cache)."""

from __future__ import annotations

import argparse

TAKES_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*",
                   help="the student run's overrides, e.g. train.loss=distill train.distill.teacher=runs/T "
                        "train.distill.top_k=32 train.distill.cache=cache/T-top32")
    p.add_argument("--world-size", type=int, default=1, help="data-parallel ranks the run will use")


def run(args: argparse.Namespace) -> int:
    from stlm.config.loader import compose_config
    from stlm.config.schema import trained_context
    from stlm.data import TokenBatches, prepare_data
    from stlm.errors import UserError
    from stlm.models import build_model
    from stlm.runs import load_run
    from stlm.train.budget import plan_budget
    from stlm.train.distill_cache import build_run_cache
    from stlm.train.setup import init_runtime
    from stlm.train.teacher import load_teacher

    cfg = compose_config(args.overrides)
    t, d = cfg.train, cfg.train.distill
    if t.loss != "distill" or not d.teacher or not d.cache:
        raise UserError("stlm distill-cache builds the cache of a distillation run: pass its train.loss=distill, "
                        "train.distill.teacher=..., train.distill.top_k=K and train.distill.cache=FOLDER")
    if args.world_size < 1:
        raise UserError(f"--world-size must be >= 1, got {args.world_size}")
    rt = init_runtime(t)
    data = prepare_data(cfg.data, progress=t.progress)
    context = trained_context(cfg)
    source = TokenBatches(data, "train", t.batch_size, context, seed=cfg.seed, mode=cfg.data.sampling,
                          world_size=args.world_size)
    budget = plan_budget(t, t.batch_size * t.grad_accum * context * args.world_size)
    n_batches = budget.total_steps * t.grad_accum if budget.total_steps is not None else None
    vocab_size = build_model(cfg.model, data.tokenizer).vocab_size
    teacher = load_teacher(d.teacher, rt.device, data.tokenizer, vocab_size, load_run)
    out = build_run_cache(cfg, data, source, n_batches, teacher, rt.device, args.world_size, rt.autocast)
    print(f"wrote {out}: the teacher's top-{d.top_k} log-probs for {n_batches:,} batches x {args.world_size} "
          f"rank(s) of {t.batch_size} windows of {context} tokens; train with the same overrides to use it")
    return 0
