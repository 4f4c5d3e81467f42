"""Checkpoints: everything needed to continue a run exactly, written atomically, without pickle.

A checkpoint is a folder `checkpoints/step-N/` holding
- `model.safetensors`: the weights (`safetensors.torch.save_model` stores a tied tensor once; on
  reload the model is built from its config, so ties come from construction),
- `trainer.safetensors`: optimizer state tensors (`optimizer.<parameter name>.<state key>`, so
  any set of optimizers resumes exactly) and the torch and numpy RNG states,
- `trainer.json`: step, tokens, elapsed time, validation loss, python RNG state, the
  fingerprint of the tokenizer and the sha256 of both .safetensors files.
It is written into `checkpoints/.tmp-step-N/`, fsynced, then renamed, so a crash never leaves a
half-written `step-N`; leftover `.tmp-*` folders are ignored, and a failed write (a full disk)
removes its temporary folder. `checkpoints/best` is a small JSON pointer to the checkpoint with the
lowest validation loss. Loading verifies the checksums first (a flipped byte inside the weights is
refused, naming the file and the older checkpoint to use) and never unpickles anything.

Checkpoints hold whole tensors whatever the world size and the parallelism (`train.parallel`), so
a run saved by 2 ranks resumes in 1 process and back. Under FSDP, the whole weights are gathered
to rank 0 through `torch.distributed.checkpoint.state_dict.get_model_state_dict` (full state
dict, offloaded to the CPU) and the optimizer state through `full_tensor` (`OptimizerSet`); on
loading, the weights go into the model before it is sharded and each rank keeps its slice of the
optimizer state.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from stlm.errors import UserError
from stlm.fileio import fsync_path as _fsync, write_atomic
from stlm.train.optim import OptimizerSet

CHECKPOINTS_DIR = "checkpoints"  # in a run directory: one step-N folder per checkpoint
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.safetensors"
META_FILE = "trainer.json"
BEST_FILE = "best"
FORMAT_VERSION = 3  # 2: optimizer state keyed by parameter name (1: by index); 3: sha256 of files
CHECKSUMMED = (MODEL_FILE, STATE_FILE)
CHECKSUMS_SINCE = 3  # older checkpoints load without the check
_STEP_DIR = re.compile(r"step-(\d+)")


# ---------------------------------------------------------------------------------------------
# Finding checkpoints
# ---------------------------------------------------------------------------------------------


def step_dirs(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints (`step-N`), oldest first; `.tmp-*` leftovers are not listed."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and _STEP_DIR.fullmatch(p.name)]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path: Path) -> int:
    return int(_STEP_DIR.fullmatch(path.name).group(1))


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = step_dirs(ckpt_dir)
    return found[-1] if found else None


def best_checkpoint(ckpt_dir: Path) -> Path | None:
    pointer = ckpt_dir / BEST_FILE
    if not pointer.exists():
        return None
    target = ckpt_dir / _read_json(pointer)["checkpoint"]
    if not target.is_dir():
        raise UserError(f"{pointer} points to {target}, which does not exist; delete {pointer} "
                        "to fall back to the latest checkpoint")
    return target


def best_val_loss(ckpt_dir: Path) -> float | None:
    pointer = ckpt_dir / BEST_FILE
    return float(_read_json(pointer)["val_loss"]) if pointer.exists() else None


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def gather_weights(model: nn.Module) -> nn.Module | dict[str, torch.Tensor]:
    """What `save_checkpoint` writes as the weights: the model itself when every rank holds it
    whole; for a sharded (FSDP) model, its full state dict on rank 0 (empty on the others), each
    tied tensor under its first name as `safetensors.torch.save_model` stores it. A collective
    under FSDP: every rank calls it."""
    from stlm.train.setup import is_sharded

    if not is_sharded(model):
        return model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if first.setdefault(id(p), name) != name:
            full.pop(name, None)  # a tied alias: stored once
    return {name: t.contiguous() for name, t in full.items()}


def save_checkpoint(ckpt_dir: Path, step: int, model: nn.Module | dict[str, torch.Tensor],
                    optimizer: OptimizerSet | dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write `step-<step>` atomically and return its path. `model` is a model or whole weights
    (`gather_weights`), `optimizer` an optimizer set or its `state_tensors()`; `meta` must be
    JSON-serialisable."""
    final = ckpt_dir / f"step-{step}"
    tmp = ckpt_dir / f".tmp-step-{step}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if isinstance(model, nn.Module):
            save_model(model, str(tmp / MODEL_FILE))
        else:
            save_file(model, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        tensors, scalars = _training_state(optimizer)
        save_file(tensors, str(tmp / STATE_FILE))
        sums = {name: sha256_file(tmp / name) for name in CHECKSUMMED}
        meta = {"format": FORMAT_VERSION, "step": step, **meta, **scalars, "sha256": sums}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
    except OSError as exc:  # a full disk or an unwritable folder: keep nothing half-written
        shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(ckpt_dir)
        kept = f"the last complete checkpoint is {last}" if last else "no checkpoint was written yet"
        raise UserError(f"cannot write checkpoint {final} ({exc.strerror or exc}); nothing of it was "
                        f"kept and {kept}; free disk space (or make {ckpt_dir} writable) and resume "
                        "with `stlm train resume=<run>`") from exc
    if final.exists():  # the same step written again (a resumed run re-reaching it)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(ckpt_dir)
    return final


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def mark_best(ckpt_dir: Path, checkpoint: Path, val_loss: float) -> None:
    """Point `checkpoints/best` at `checkpoint` (atomically)."""
    _write_json_atomic(ckpt_dir / BEST_FILE, {"checkpoint": checkpoint.name, "val_loss": val_loss})


def prune(ckpt_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints, never the best one; drop leftovers."""
    best = best_checkpoint(ckpt_dir)
    for old in step_dirs(ckpt_dir)[: -max(keep_last, 1)]:
        if best is None or old.name != best.name:
            shutil.rmtree(old)
    for leftover in ckpt_dir.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _training_state(optimizer: OptimizerSet | dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer if isinstance(optimizer, dict) else optimizer.state_tensors()
    tensors = {f"optimizer.{key}": value for key, value in state.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    scalars = {"rng": {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
                       "python": [py_version, list(py_state), py_gauss]}}
    return tensors, scalars


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def verify(checkpoint: Path, name: str) -> None:
    """Check `checkpoint/name` against the sha256 recorded in trainer.json (format 3 on)."""
    path = checkpoint / name
    if not path.exists():
        raise UserError(f"checkpoint file {path} is missing; the checkpoint is incomplete; "
                        f"{_older_hint(checkpoint)}")
    meta = read_meta(checkpoint)
    recorded = meta.get("sha256", {}).get(name)
    if recorded is None and meta.get("format", 1) < CHECKSUMS_SINCE:
        return  # written before checksums existed
    if recorded is None or sha256_file(path) != recorded:
        raise UserError(f"checkpoint file {path} is corrupt: its sha256 differs from the one recorded "
                        f"in {checkpoint / META_FILE} when it was written; {_older_hint(checkpoint)}")


def _older_hint(checkpoint: Path) -> str:
    if not _STEP_DIR.fullmatch(checkpoint.name):
        return "delete it and save it again"
    older = [p for p in step_dirs(checkpoint.parent) if checkpoint_step(p) < checkpoint_step(checkpoint)]
    if not older:
        return "no older checkpoint is left: train the run again"
    return (f"use the older checkpoint {older[-1]}: pass `--checkpoint {older[-1].name}`, or delete "
            f"{checkpoint} so that resume and `last` fall back to it")


def load_weights(model: nn.Module, checkpoint: Path, device: torch.device | str = "cpu") -> None:
    """Load `checkpoint/model.safetensors` (checksum verified) into a model built from the run's
    config."""
    path = checkpoint / MODEL_FILE
    verify(checkpoint, MODEL_FILE)
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt or truncated ({exc}); "
                        "delete that checkpoint folder to use an earlier one") from exc
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"checkpoint {path} does not fit the model built from the run's config "
                        f"({' '.join(first[:3])}); was config.yaml changed?") from exc


def read_meta(checkpoint: Path) -> dict[str, Any]:
    return _read_json(checkpoint / META_FILE)


def load_training_state(checkpoint: Path, optimizer: OptimizerSet) -> dict[str, Any]:
    """Restore optimizer state and RNG states; return the checkpoint's metadata (step, tokens, ...)."""
    meta = read_meta(checkpoint)
    if meta.get("format", 1) < 2:
        raise UserError(f"{checkpoint} was written by an older stlm (checkpoint format "
                        f"{meta.get('format', 1)}, optimizer state by index) and cannot be resumed; "
                        "its weights still load for eval, generate and export")
    path = checkpoint / STATE_FILE
    verify(checkpoint, STATE_FILE)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt or truncated ({exc})") from exc
    prefix = "optimizer."
    optimizer.load_state_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                 str(path))
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    kind, pos, has_gauss, gauss = meta["rng"]["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    py_version, py_state, py_gauss = meta["rng"]["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    return meta


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"checkpoint file {path} is missing; the checkpoint is incomplete") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"checkpoint file {path} is corrupt ({exc})") from exc


def _write_json_atomic(path: Path, data: dict) -> None:
    try:
        write_atomic(path, json.dumps(data, indent=1))
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); free disk space and resume "
                        "with `stlm train resume=<run>`") from exc
