"""Byte-level tokenizer: ids 0-255 are the UTF-8 bytes themselves, 256 is end-of-text.

No training, no out-of-vocabulary text, the longest sequences (ByT5, Xue et al. 2022,
https://arxiv.org/abs/2105.13626).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from stlm.tokenizers.base import Tokenizer

BYTE_VOCAB_SIZE = 257  # 256 bytes + end-of-text
BYTE_EOT_ID = 256


class ByteTokenizer(Tokenizer):
    kind = "byte"

    @property
    def vocab_size(self) -> int:
        return BYTE_VOCAB_SIZE

    @property
    def eot_id(self) -> int:
        return BYTE_EOT_ID

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def token_bytes(self, token_id: int) -> bytes:
        if not 0 <= token_id < BYTE_VOCAB_SIZE:
            raise ValueError(f"token id {token_id} is outside the byte vocabulary [0, {BYTE_VOCAB_SIZE})")
        return b"" if token_id == BYTE_EOT_ID else bytes([token_id])

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return bytes(i for i in map(int, ids) if i != BYTE_EOT_ID)

    def _save_files(self, directory: Path) -> None:
        pass  # nothing beyond stlm_tokenizer.json
