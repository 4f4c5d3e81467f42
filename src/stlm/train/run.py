"""A whole run, start to finish: run directory, data, training, final evaluation, summary."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from stlm.config.schema import RunConfig
from stlm.errors import DISK_ERRNOS, UserError, disk_fix, require_writable
from stlm.runs import CHECKPOINTS_DIR, RunLock, lock_run_dir, open_new_run, write_config
from stlm.train.report import final_report, format_summary
from stlm.train.setup import Runtime, init_runtime
from stlm.train.tracking import check_tracker
from stlm.train.trainer import Trainer


def run_training(cfg: RunConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `cfg` (a fresh run, or the one at `cfg.resume`) and return its summary (rank 0; other
    ranks return an empty dict). The run directory is locked and checked before any data is
    prepared; a resume changes nothing in it until its checkpoint has been restored."""
    started = time.perf_counter()
    check_tracker(cfg.train.tracker)  # a missing package fails before any data is prepared
    if cfg.init_from and not cfg.resume:
        cfg = inherit_model(cfg)
    if not cfg.model.compression.is_empty:
        raise UserError("model.compression describes a `stlm compress` output; training builds "
                        "uncompressed models, so leave it empty")
    rt = init_runtime(cfg.train)
    lock: RunLock | None = None
    try:
        run_dir, lock = _run_dir(cfg, rt, echo)
        try:
            data = _prepare_data(cfg, rt)
            trainer = Trainer(cfg, run_dir, data, rt, resume=bool(cfg.resume))
        except BaseException:
            if rt.is_main and not cfg.resume:
                _discard_unstarted(run_dir)
            raise
        if rt.is_main:
            if cfg.resume:  # restored: now the budget or cadence overrides may be saved
                write_config(run_dir, dataclasses.replace(cfg, resume=None))
            echo(f"run {run_dir}: {trainer.budget.describe()} on {rt.device}"
                 f"{f' x{rt.world_size}' if rt.distributed else ''}"
                 f"{f', resuming at step {trainer.state.step}' if cfg.resume else ''}")
            for note in trainer.notes:
                echo(f"warning: {note}")
        trainer.fit()
        trainer.unshard()  # under FSDP: the whole model on rank 0 for the final evaluation
        summary: dict[str, Any] = {}
        if rt.is_main:
            session_s = time.perf_counter() - started
            summary, pairs = final_report(trainer, trainer.resumed_elapsed_s + session_s)
            echo(format_summary(summary, pairs))
        rt.barrier()  # the ranks finish together (a process group started next meets no stragglers)
        return summary
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        raise UserError(f"cannot write{where} ({exc.strerror}); {disk_fix(exc)}, then continue with "
                        "`stlm train resume=<run>` (or start again if no checkpoint was written)") from exc
    finally:
        if lock is not None:
            lock.release()
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


def _run_dir(cfg: RunConfig, rt: Runtime, echo: Callable[[str], None]) -> tuple[Path, RunLock | None]:
    """The run's folder, locked by rank 0: a fresh one, or the resumed one (checked writable)."""
    if cfg.resume:
        run_dir = Path(cfg.resume)
        lock = None
        if rt.is_main:
            lock = lock_run_dir(run_dir)
            try:
                for folder in (run_dir, run_dir / CHECKPOINTS_DIR):
                    require_writable(folder, "a resumed run writes its metrics and checkpoints there")
            except BaseException:
                lock.release()
                raise
        return run_dir, lock
    path, lock = None, None
    if rt.is_main:
        new = open_new_run(cfg)
        path, lock = str(new.path), new.lock
        if new.reused:
            echo(f"note: reusing {new.path}: it held an earlier start of this run that stopped before "
                 "its first checkpoint")
    return Path(rt.broadcast_text(path)), lock


def _discard_unstarted(run_dir: Path) -> None:
    """A fresh run that fails before training (data that cannot be prepared, a model that cannot be
    built) leaves no folder behind (a retry with the same run_name would otherwise find it)."""
    import shutil

    from stlm.train.checkpoint import step_dirs

    if not step_dirs(run_dir / CHECKPOINTS_DIR):
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
