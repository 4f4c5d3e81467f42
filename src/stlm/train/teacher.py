"""Distillation teachers (`train.distill.teacher`): an stlm run directory (its last checkpoint) or a
local transformers causal-LM folder (`AutoModelForCausalLM`, loaded offline, e.g. an `stlm export`
output or any Llama with the run's tokenizer).

A teacher is frozen, in eval mode, and must share the student's tokenizer: an stlm run by the
tokenizer fingerprint, a transformers folder by its `AutoTokenizer` giving the same vocabulary
size and the same ids on a probe text. `teacher_identity` hashes the teacher's weight and config
files, without loading them, so a cache of its outputs (stlm.train.distill_cache) can check that it
belongs to this teacher.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from stlm.errors import UserError
from stlm.train.checkpoint import CHECKPOINTS_DIR, MODEL_FILE, latest_checkpoint, sha256_file

# Text that exercises letters, digits, punctuation, whitespace runs and multi-byte UTF-8.
PROBE_TEXT = ("Once upon a time, 3 little cats sat on the mat... \"Why?\" asked Tom.\n\n"
              "  Indented\ttext: x = (a + b) * 42; naïve café, Grüße, 東京, emoji 🙂 — the end.")
HF_WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json")


def is_transformers_folder(path: Path) -> bool:
    """A transformers model folder (config.json) rather than an stlm run directory (config.yaml)."""
    return (path / "config.json").is_file() and not (path / "config.yaml").is_file()


def teacher_files(path: str | Path) -> list[Path]:
    """The files whose bytes define the teacher: the config and last checkpoint's weights of an stlm
    run, or the weights and config of a transformers folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"the teacher train.distill.teacher={path} does not exist; give an stlm run directory "
                        "or a transformers model folder")
    if is_transformers_folder(path):
        return sorted(f for pattern in HF_WEIGHT_FILES for f in path.glob(pattern))
    last = latest_checkpoint(path / CHECKPOINTS_DIR)
    if last is None:
        raise UserError(f"the teacher {path} has no checkpoint ({path / CHECKPOINTS_DIR} holds no step-N folder)")
    return [path / "config.yaml", last / MODEL_FILE]


def teacher_identity(path: str | Path) -> str:
    """sha256 over the teacher's defining files (each name and its file's sha256)."""
    h = hashlib.sha256()
    for f in teacher_files(path):
        h.update(f"{f.name}\0{sha256_file(f)}\0".encode())
    return h.hexdigest()


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_teacher(path: str, device: torch.device, tokenizer, vocab_size: int, load_run: Callable) -> nn.Module:
    """The frozen teacher at `path` (an stlm run or a transformers folder) whose forward(ids)
    returns an object with `.logits` (batch, time, vocab_size); its tokenizer must be `tokenizer`."""
    folder = Path(path)
    teacher_files(folder)  # exists, and a run has a checkpoint
    if is_transformers_folder(folder):
        model = _load_transformers(folder, device, tokenizer)
        rows = model.config.vocab_size
    else:
        try:
            run = load_run(path, which="last", device=device)
        except (FileNotFoundError, OSError) as exc:
            raise UserError(f"cannot load the teacher run train.distill.teacher={path}: {exc}") from exc
        if run.tokenizer.fingerprint() != tokenizer.fingerprint():
            raise UserError(f"the teacher {path} was trained with another tokenizer than this run's data; "
                            "distil from a run prepared with the same data.tokenizer settings")
        model, rows = run.model, run.model.vocab_size
    if rows != vocab_size:
        raise UserError(f"the teacher {path} has {rows} vocabulary rows, the student {vocab_size}; "
                        "set model.vocab_size (or pad_vocab_to) to match the teacher")
    return _frozen(model)


def _load_transformers(folder: Path, device: torch.device, tokenizer) -> nn.Module:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise UserError("a transformers teacher needs the transformers package: pip install 'stlm[eval]'") from exc
    try:
        hf_tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"the teacher folder {folder} has no tokenizer that transformers can load "
                        f"({str(exc).splitlines()[0]}); it must hold the student's tokenizer") from exc
    check_same_tokenizer(hf_tok, tokenizer, folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the teacher {folder} with AutoModelForCausalLM: "
                        f"{str(exc).splitlines()[0]}") from exc
    return model.to(device)


def check_same_tokenizer(hf_tok, tokenizer, folder: Path) -> None:
    """Refuse a transformers tokenizer that differs from the run's: another vocabulary size, or other
    ids for the probe text."""
    theirs = hf_tok(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    ours = tokenizer.encode(PROBE_TEXT)
    if len(hf_tok) != tokenizer.vocab_size or theirs != ours:
        where = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
        raise UserError(f"the teacher's tokenizer ({folder}: {type(hf_tok).__name__}, {len(hf_tok)} ids) differs "
                        f"from this run's ({tokenizer.kind}, {tokenizer.vocab_size} ids; fingerprint "
                        f"{tokenizer.fingerprint()}): the probe text's ids part at token {where}; distil "
                        "from a teacher with the student's tokenizer")
