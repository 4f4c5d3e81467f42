"""BabyLM's checkpoint schedule (2025/2026 rules, ../shared/research/anchors.md A4): a submission
provides the model after 1M, 2M, ..., 10M words seen, then every 10M up to 100M, named `chck_{N}M`
(Hugging Face branches of that name; `stlm export RUN OUT --babylm` writes one folder each).

Words are whitespace-separated words of the training text, as BabyLM counts its corpus. The train
split's words per token is measured once from its shards (`count_words`: word starts in the token
byte stream, documents separated by the zero-byte end-of-text id), and words seen = tokens seen x
that ratio, exact at every pass over the data. With `train.babylm_checkpoints=true` the trainer
saves the weights (float32 safetensors) as RUN/babylm/chck_{N}M/ once the words seen reach N
million; they are never pruned, and a resumed run skips the ones already on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from safetensors.torch import save_model

from stlm.tokenizers.base import Tokenizer
from stlm.train import checkpoint as ckpt

BABYLM_DIR = "babylm"
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
CHUNK = 1 << 22  # tokens read at a time when counting words


def schedule_millions() -> list[int]:
    """1..10, then 20..100: the N of each `chck_{N}M`."""
    return [*range(1, 11), *range(20, 101, 10)]


def _token_word_tables(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per id: word starts inside its bytes after the first byte, whether its first byte is not
    whitespace, and whether its bytes end in whitespace (zero-byte specials count as whitespace)."""
    n = tokenizer.vocab_size
    inner, starts, ends = np.zeros(n, np.int64), np.zeros(n, bool), np.ones(n, bool)
    for i, b in enumerate(tokenizer.token_table()):
        if not b:
            continue
        space = [c in b" \t\n\r\x0b\x0c" for c in b]
        inner[i] = sum(1 for a, c in zip(space, space[1:]) if a and not c)
        starts[i], ends[i] = not space[0], space[-1]
    return inner, starts, ends


def count_words(ids, tokenizer: Tokenizer) -> int:
    """Whitespace-separated words in the text the token ids spell (documents separated by specials)."""
    inner, starts, ends = _token_word_tables(tokenizer)
    total, prev_ends = 0, True
    for lo in range(0, len(ids), CHUNK):
        chunk = np.asarray(ids[lo : lo + CHUNK], dtype=np.int64)
        before = np.concatenate([[prev_ends], ends[chunk[:-1]]])
        total += int(inner[chunk].sum() + (starts[chunk] & before).sum())
        prev_ends = bool(ends[chunk[-1]])
    return total


class BabyLMCheckpoints:
    """Saves `chck_{N}M` as training passes N million words (`words_per_m` words per "M": keep the
    default 1,000,000 for a submission; tests use fewer)."""

    def __init__(self, run_dir: Path, data, words_per_m: int = 1_000_000):
        tokens = data.tokens("train")
        self.words_per_token = count_words(tokens, data.tokenizer) / max(len(tokens), 1)
        self.folder = Path(run_dir) / BABYLM_DIR
        self.words_per_m = words_per_m
        self.pending = [n for n in schedule_millions() if not (self.folder / f"chck_{n}M" / MODEL_FILE).is_file()]

    def words(self, tokens: int) -> int:
        return int(tokens * self.words_per_token)

    def after_step(self, model, step: int, tokens: int) -> list[Path]:
        """Save every checkpoint whose word count `tokens` has now reached (usually none)."""
        words, saved = self.words(tokens), []
        while self.pending and words >= self.pending[0] * self.words_per_m:
            saved.append(self._save(model, self.pending.pop(0), step, tokens, words))
        return saved

    def _save(self, model, millions: int, step: int, tokens: int, words: int) -> Path:
        final = self.folder / f"chck_{millions}M"
        tmp = self.folder / f".tmp-chck_{millions}M"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / MODEL_FILE))
        # the checksum every weight load verifies (stlm.train.checkpoint), as in step-N folders
        (tmp / ckpt.META_FILE).write_text(json.dumps({"format": ckpt.FORMAT_VERSION, "step": step,
                                                      "sha256": {MODEL_FILE: ckpt.sha256_file(tmp / MODEL_FILE)}}))
        (tmp / META_FILE).write_text(json.dumps({"words_millions": millions, "step": step, "tokens": tokens,
                                                 "words": words, "words_per_token": self.words_per_token}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final


def babylm_checkpoints(run_dir: Path) -> list[Path]:
    """The run's `chck_{N}M` folders, in schedule order."""
    folder = Path(run_dir) / BABYLM_DIR
    return [folder / f"chck_{n}M" for n in schedule_millions() if (folder / f"chck_{n}M" / MODEL_FILE).is_file()]
