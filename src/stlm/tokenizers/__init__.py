"""Tokenizers behind one interface (`stlm.tokenizers.base.Tokenizer`)."""

from __future__ import annotations

from stlm.config.schema import TokenizerConfig
from stlm.tokenizers.base import Tokenizer

GPT2_VOCAB_SIZE = 50257
BYTE_VOCAB_SIZE = 257  # 256 bytes + end-of-text


def vocab_size_for(cfg: TokenizerConfig) -> int:
    """The vocabulary size a tokenizer config will produce, without building it."""
    return {"byte": BYTE_VOCAB_SIZE, "gpt2": GPT2_VOCAB_SIZE}.get(cfg.kind, cfg.vocab_size)


__all__ = ["Tokenizer", "vocab_size_for", "GPT2_VOCAB_SIZE", "BYTE_VOCAB_SIZE"]
