"""The run directory: what a training run leaves behind, and loading it back.

    runs/<name>/
      config.yaml      the resolved RunConfig
      tokenizer/       the tokenizer (`Tokenizer.save`)
      metrics.jsonl    one JSON object per logged step
      checkpoints/     step-N/ folders and the `best` pointer (`stlm.train.checkpoint`)
      summary.json     final numbers
      loss.png         training and validation loss curves
      run_info.json    resolved config, git commit, package versions, machine (per session)
      wandb/ | tensorboard/   the tracker's files, with train.tracker=wandb | tensorboard
      babylm/chck_{N}M/        BabyLM checkpoints, with train.babylm_checkpoints=true
      .lock            held (flock) by the process training in it; names that process

What the folder guarantees (locking, atomic writes, checksums, what resume may change) and how
each is tested: docs/run_directory.md.

`load_run(path)` rebuilds the model from config.yaml and the tokenizer's vocabulary (for a
`stlm compress` output, with the shapes its `model.compression` section describes), then loads a
checkpoint's weights; evaluation, generation and export all start from it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from stlm.config.loader import config_from_dict, incomplete_keys, to_yaml
from stlm.config.schema import RunConfig, trained_context
from stlm.errors import ConfigError, UserError
from stlm.fileio import write_atomic
from stlm.train.checkpoint import CHECKPOINTS_DIR

CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LOSS_PLOT = "loss.png"
LOCK_FILE = ".lock"


def default_run_name(cfg: RunConfig) -> str:
    return f"{cfg.model.name}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class NewRun:
    """A fresh run directory, locked by this process (`reused`: it held an earlier start of the
    same run_name that stopped before its first checkpoint, now cleared)."""

    path: Path
    lock: "RunLock"
    reused: bool


def create_run_dir(cfg: RunConfig) -> Path:
    """`open_new_run` for callers that do not train in it (the lock is released at once)."""
    run = open_new_run(cfg)
    run.lock.release()
    return run.path


def open_new_run(cfg: RunConfig) -> NewRun:
    """Make `runs_dir/<name>/`, lock it and write config.yaml there; fails early if it cannot be
    written. An existing folder of the same run_name is reused only when it holds no checkpoint and
    nothing but run files (an earlier start killed or refused before its first checkpoint)."""
    root = Path(cfg.runs_dir)
    name = cfg.run_name or default_run_name(cfg)
    run_dir = root / name
    if cfg.run_name is None:  # two runs started in the same second get distinct folders
        n = 2
        while run_dir.exists():
            run_dir, n = root / f"{name}-{n}", n + 1
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(run_dir, exc) from exc
    lock = lock_run_dir(run_dir)
    try:
        reused = _clear_unstarted(run_dir)
        (run_dir / CHECKPOINTS_DIR).mkdir(exist_ok=True)
        write_config(run_dir, cfg)
    except OSError as exc:
        lock.release()
        raise _unwritable(run_dir, exc) from exc
    except BaseException:
        lock.release()
        raise
    return NewRun(run_dir, lock, reused)


def _unwritable(run_dir: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write the run directory {run_dir} ({exc.strerror or exc}); "
                     "set runs_dir= to a writable folder")


# What a run directory may hold before its first checkpoint (temporary files included).
_RUN_FILES = {CONFIG_FILE, TOKENIZER_DIR, METRICS_FILE, CHECKPOINTS_DIR, SUMMARY_FILE, LOSS_PLOT,
              "run_info.json", "wandb", "tensorboard", "babylm",
              f".tmp-{CONFIG_FILE}", f".tmp-{METRICS_FILE}", f".tmp-{SUMMARY_FILE}"}


def _clear_unstarted(run_dir: Path) -> bool:
    """Empty a run folder that never reached a checkpoint (True if it held anything); refuse a
    folder with a checkpoint (it can be resumed) or with files a run does not write."""
    from stlm.train.checkpoint import step_dirs

    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
    if step_dirs(run_dir / CHECKPOINTS_DIR):
        raise UserError(f"run directory {run_dir} already exists; continue it with "
                        f"`stlm train resume={run_dir}` or pick another run_name=")
    foreign = sorted(p.name for p in entries if p.name not in _RUN_FILES)
    if foreign:
        raise UserError(f"{run_dir} exists and is not a run directory (it holds {', '.join(foreign[:3])}); "
                        "pick another run_name= or runs_dir=")
    for p in entries:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return bool(entries)


class RunLock:
    """An exclusive `flock` on `<run>/.lock`: one training process per run directory. The kernel
    drops the lock when its process dies (even by SIGKILL), so a stale lock never blocks; the file
    stays (deleting it would let two processes lock two different files) and records the holder."""

    def __init__(self, fd: int, path: Path):
        self._fd, self.path = fd, path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_run_dir(run_dir: Path) -> RunLock:
    """Lock `run_dir` for this process, or refuse naming the process that holds it."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unwritable(Path(run_dir), exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
               f"(started {holder.get('started', '?')})")
        raise UserError(f"run directory {run_dir} is in use by {who}; wait for it to finish or stop "
                        "that process (a stopped process releases its lock)") from None
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError:
        pass  # the lock holds without the note (e.g. a full disk); a refusal then names "?"
    return RunLock(fd, path)


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    write_atomic(run_dir / CONFIG_FILE, to_yaml(cfg))


def read_config(run_dir: Path) -> RunConfig:
    """A run's saved config, validated as a whole: text, a mapping, every section and key present
    (`incomplete_keys`), every value valid. A damaged file is refused, never filled from defaults:
    defaults would silently describe a different run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise UserError(f"{run_dir} is not a run directory: {path} is missing")
    damaged = ("; it was damaged or edited: restore it from a copy of the run (its settings cannot "
               "be guessed, and defaults would describe a different run)")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not text (byte {exc.start} is not UTF-8){damaged}") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML ({' '.join(str(exc).split())}){damaged}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc})") from exc
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}, not a mapping of sections"
        raise UserError(f"{path} is {what}{damaged}")
    missing = incomplete_keys(data)
    if missing:
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise UserError(f"{path} is incomplete: {', '.join(missing[:6])}{more}{damaged}")
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise UserError(f"{path} is not a valid run config: {exc}") from exc


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: object  # stlm.tokenizers.base.Tokenizer
    cfg: RunConfig
    run_dir: Path
    checkpoint: Path
    step: int

    @property
    def context(self) -> int:
        """The sequence length the model was trained on (at most its context length)."""
        return trained_context(self.cfg)


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """`best` (lowest validation loss; the latest if none was evaluated), `last`, or `step-N`."""
    from stlm.train.checkpoint import best_checkpoint, latest_checkpoint

    ckpt_dir = Path(run_dir) / CHECKPOINTS_DIR
    if which == "best":
        found = best_checkpoint(ckpt_dir) or latest_checkpoint(ckpt_dir)
    elif which == "last":
        found = latest_checkpoint(ckpt_dir)
    else:
        found = ckpt_dir / which if (ckpt_dir / which).is_dir() else None
        if found is None:
            raise UserError(f"checkpoint '{which}' not found in {ckpt_dir}; use best, last or step-N")
    if found is None:
        raise UserError(f"{run_dir} has no checkpoint yet ({ckpt_dir} holds no step-N folder); "
                        "train it first or resume it with `stlm train resume=...`")
    return found


def load_tokenizer_dir(run_dir: Path):
    from stlm.tokenizers import load_tokenizer

    path = Path(run_dir) / TOKENIZER_DIR
    if not path.is_dir():
        raise UserError(f"{run_dir} is incomplete: the tokenizer folder {path} is missing")
    return load_tokenizer(path)


def load_run(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> LoadedRun:
    """The model (eval mode, on `device`), tokenizer and config of a run directory."""
    from stlm.models import build_model
    from stlm.train.checkpoint import checkpoint_step, load_weights

    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    cfg = read_config(run_dir)
    tokenizer = load_tokenizer_dir(run_dir)
    checkpoint = find_checkpoint(run_dir, which)
    try:
        model = build_model(cfg.model, tokenizer)
        if not cfg.model.compression.is_empty:  # a `stlm compress` output: its exact shapes
            from stlm.compress.structure import apply_structure

            apply_structure(model, cfg.model)
    except ValueError as exc:
        raise UserError(f"cannot build the model of {run_dir}: {exc}") from exc
    load_weights(model, checkpoint)
    model.to(device).eval()
    return LoadedRun(model, tokenizer, cfg, run_dir, checkpoint, checkpoint_step(checkpoint))
