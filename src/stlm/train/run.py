"""A whole run, start to finish: run directory, data, training, final evaluation, summary."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from stlm.config.schema import RunConfig
from stlm.errors import UserError
from stlm.runs import create_run_dir, write_config
from stlm.train.report import final_report, format_summary
from stlm.train.setup import Runtime, init_runtime
from stlm.train.tracking import check_tracker
from stlm.train.trainer import Trainer


def run_training(cfg: RunConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `cfg` (a fresh run, or the one at `cfg.resume`) and return its summary (rank 0; other
    ranks return an empty dict). The run directory is checked before any data is prepared."""
    started = time.perf_counter()
    check_tracker(cfg.train.tracker)  # a missing package fails before any data is prepared
    if cfg.init_from and not cfg.resume:
        cfg = inherit_model(cfg)
    rt = init_runtime(cfg.train)
    try:
        run_dir = _run_dir(cfg, rt)
        try:
            data = _prepare_data(cfg, rt)
        except BaseException:
            if rt.is_main and not cfg.resume:
                _discard_unstarted(run_dir)
            raise
        trainer = Trainer(cfg, run_dir, data, rt, resume=bool(cfg.resume))
        if rt.is_main:
            echo(f"run {run_dir}: {trainer.budget.describe()} on {rt.device}"
                 f"{f' x{rt.world_size}' if rt.distributed else ''}"
                 f"{f', resuming at step {trainer.state.step}' if cfg.resume else ''}")
        trainer.fit()
        if not rt.is_main:
            return {}
        summary, pairs = final_report(trainer, time.perf_counter() - started)
        echo(format_summary(summary, pairs))
        return summary
    finally:
        rt.close()


def inherit_model(cfg: RunConfig) -> RunConfig:
    """`init_from=RUN`: the new run takes RUN's model config and tokenizer (its weights are loaded
    by the trainer), and its own data, budget and optimizer settings."""
    from stlm.runs import TOKENIZER_DIR, load_tokenizer_dir, read_config

    source = Path(cfg.init_from)
    if not source.is_dir():
        raise UserError(f"init_from={source}: run directory does not exist")
    tok = load_tokenizer_dir(source)
    tokenizer = dataclasses.replace(cfg.data.tokenizer, kind=tok.kind, vocab_size=tok.vocab_size,
                                    path=None if tok.kind == "byte" else str((source / TOKENIZER_DIR).resolve()))
    return dataclasses.replace(cfg, model=read_config(source).model,
                               data=dataclasses.replace(cfg.data, tokenizer=tokenizer))


def _run_dir(cfg: RunConfig, rt: Runtime) -> Path:
    if cfg.resume:
        run_dir = Path(cfg.resume)
        if rt.is_main:  # the budget or cadence may have changed
            write_config(run_dir, dataclasses.replace(cfg, resume=None))
        return run_dir
    path = [str(create_run_dir(cfg))] if rt.is_main else [""]
    if rt.distributed:
        import torch.distributed as dist

        dist.broadcast_object_list(path, src=0)
    return Path(path[0])


def _discard_unstarted(run_dir: Path) -> None:
    """A fresh run whose data could not be prepared leaves no folder behind (a retry with the same
    run_name would otherwise be told to resume a run that never started)."""
    import shutil

    if not any((run_dir / "checkpoints").glob("*")):
        shutil.rmtree(run_dir, ignore_errors=True)


def _prepare_data(cfg: RunConfig, rt: Runtime):
    """Rank 0 prepares (and caches) the data first; the others then read the cache."""
    from stlm.data import prepare_data

    if rt.is_main:
        data = prepare_data(cfg.data, progress=cfg.train.progress)
    rt.barrier()
    if not rt.is_main:
        data = prepare_data(cfg.data, progress=False)
    return data
