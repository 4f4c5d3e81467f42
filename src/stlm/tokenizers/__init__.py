"""Tokenizers behind one interface (`stlm.tokenizers.base.Tokenizer`): build, save, load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from stlm.config.schema import TokenizerConfig
from stlm.errors import UserError
from stlm.tokenizers.base import EOT_TEXT, META_FILE, Tokenizer
from stlm.tokenizers.bpe import BPETokenizer
from stlm.tokenizers.byte import BYTE_VOCAB_SIZE, ByteTokenizer
from stlm.tokenizers.chunked import ChunkedTokenizer, with_chunk_limit
from stlm.tokenizers.gpt2 import GPT2_VOCAB_SIZE, R50K_FILE, GPT2Tokenizer
from stlm.tokenizers.hf import HFTokenizer

KINDS = ("byte", "bpe", "gpt2", "hf")  # hf: an imported model's tokenizer.json (`stlm import`)


def vocab_size_for(cfg: TokenizerConfig) -> int:
    """The vocabulary size a tokenizer config will produce, without training it (a trained BPE
    reaches `cfg.vocab_size` unless its corpus runs out of pairs to merge)."""
    if cfg.max_chunk_bytes is not None and (cfg.kind != "bpe" or cfg.path):
        return with_chunk_limit(build_tokenizer(cfg), cfg.max_chunk_bytes).vocab_size
    if cfg.kind == "bpe" and cfg.path:
        return BPETokenizer.from_file(cfg.path).vocab_size
    if cfg.kind == "hf" and cfg.path:
        return HFTokenizer.from_dir(cfg.path).vocab_size
    return {"byte": BYTE_VOCAB_SIZE, "gpt2": GPT2_VOCAB_SIZE}.get(cfg.kind, cfg.vocab_size)


def build_tokenizer(cfg: TokenizerConfig, texts: Callable[[], Iterable[str]] | None = None) -> Tokenizer:
    """The tokenizer `cfg` names; a BPE without `cfg.path` is trained on `texts()` (not cached here)."""
    if cfg.kind == "byte":
        return ByteTokenizer()
    if cfg.kind == "gpt2":
        return GPT2Tokenizer.find(cfg.path)
    if cfg.kind == "bpe":
        if cfg.path:
            return BPETokenizer.from_file(cfg.path)
        if texts is None:
            raise UserError("data.tokenizer.kind=bpe needs training text or data.tokenizer.path=<tokenizer.json>")
        return BPETokenizer.train(texts(), cfg.vocab_size, cfg.train_chars)
    if cfg.kind == "hf":
        if not cfg.path:
            raise UserError("data.tokenizer.kind=hf needs data.tokenizer.path=<an imported run's tokenizer/ folder>")
        return HFTokenizer.from_dir(cfg.path)
    raise UserError(f"data.tokenizer.kind={cfg.kind!r} is unknown; choose one of {', '.join(KINDS)}")


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Rebuild what `Tokenizer.save(directory)` wrote, checking it maps ids to the same bytes."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{meta_path} does not exist: {directory} holds no saved tokenizer "
                        f"(Tokenizer.save writes it; point to the run directory that training wrote)")
    try:
        meta = json.loads(meta_path.read_text())
        kind = meta["kind"]
        expected = {k: meta[k] for k in ("vocab_size", "eot_id", "fingerprint")}
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{meta_path} is corrupt ({e!r}); re-save the tokenizer or retrain") from e
    if kind == "byte":
        tok: Tokenizer = ByteTokenizer()
    elif kind == "bpe":
        tok = BPETokenizer.from_file(directory)
    elif kind == "gpt2":
        gpt2_file = directory / R50K_FILE
        if not gpt2_file.is_file():
            raise UserError(f"{gpt2_file} is missing from the saved tokenizer; copy it from "
                            f"the gpt2-bpe/ folder of the data folder (docs/data.md) or re-save the tokenizer")
        tok = GPT2Tokenizer(gpt2_file)
    elif kind == "hf":
        tok = HFTokenizer.from_dir(directory)
    else:
        raise UserError(f"{meta_path} names an unknown tokenizer kind {kind!r} (known: {', '.join(KINDS)})")
    tok = with_chunk_limit(tok, meta.get("max_chunk_bytes"))
    actual = {k: v for k, v in tok.meta().items() if k in expected}
    if actual != expected:
        raise UserError(f"tokenizer in {directory} does not match {META_FILE}: expected {expected}, "
                        f"got {actual}; its files were changed after saving")
    return tok


__all__ = ["Tokenizer", "ByteTokenizer", "BPETokenizer", "GPT2Tokenizer", "HFTokenizer", "ChunkedTokenizer",
           "build_tokenizer",
           "load_tokenizer", "vocab_size_for", "EOT_TEXT", "GPT2_VOCAB_SIZE", "BYTE_VOCAB_SIZE"]
