"""A tokenizer whose tokens are at most `max_chunk_bytes` long: the chunking of a byte-level model.

The byte-pooled model (STLM, Hillier, Guertler et al., 2024, section 5.2) reads and writes text in
chunks whose boundaries are a BPE tokenizer's. Boundaries are byte offsets of the original UTF-8:
every id maps to its exact bytes (`token_bytes`), nothing is decoded to a string and re-encoded
(the public STLM code did, turning a character split across two tokens into U+FFFD). A token longer
than the limit is split into consecutive pieces of at most `max_chunk_bytes` bytes, never
truncated: each piece is the base tokenizer's id for those bytes when it has one, else a new id
appended after the base vocabulary. The long ids themselves stay in the vocabulary (so ids keep
their meaning) but `encode` never produces them. End of text stays the base tokenizer's single id.
Chunks concatenate to the input bytes: `decode_bytes(encode(text)) == text.encode()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from stlm.errors import UserError
from stlm.tokenizers.base import Tokenizer


class ChunkedTokenizer(Tokenizer):
    def __init__(self, base: Tokenizer, max_chunk_bytes: int):
        if max_chunk_bytes < 1:
            raise UserError(f"data.tokenizer.max_chunk_bytes={max_chunk_bytes} must be at least 1")
        self.base, self.max_chunk_bytes = base, max_chunk_bytes
        self.kind = base.kind
        table = list(base.token_table())
        by_bytes = {b: i for i, b in enumerate(table) if b}
        self.split: dict[int, list[int]] = {}  # long base id -> its piece ids
        for i, b in enumerate(base.token_table()):
            if len(b) <= max_chunk_bytes:
                continue
            pieces = []
            for start in range(0, len(b), max_chunk_bytes):
                piece = b[start : start + max_chunk_bytes]
                if piece not in by_bytes:
                    by_bytes[piece] = len(table)
                    table.append(piece)
                pieces.append(by_bytes[piece])
            self.split[i] = pieces
        self._token_table = table

    @property
    def vocab_size(self) -> int:
        return len(self._token_table)

    @property
    def eot_id(self) -> int:
        return self.base.eot_id

    def _expand(self, ids: list[int]) -> list[int]:
        if not self.split:
            return ids
        out: list[int] = []
        for i in ids:
            pieces = self.split.get(i)
            if pieces is None:
                out.append(i)
            else:
                out.extend(pieces)
        return out

    def encode(self, text: str) -> list[int]:
        return self._expand(self.base.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._expand(ids) for ids in self.base.encode_batch(texts)]

    def token_bytes(self, token_id: int) -> bytes:
        return self._token_table[token_id]

    def unused_ids(self) -> set[int]:
        """Ids `encode` never produces (the base tokens longer than the limit)."""
        return set(self.split)

    def meta(self) -> dict:
        return {**super().meta(), "max_chunk_bytes": self.max_chunk_bytes}

    def _save_files(self, directory: Path) -> None:
        self.base._save_files(directory)


def with_chunk_limit(tokenizer: Tokenizer, max_chunk_bytes: int | None) -> Tokenizer:
    """`tokenizer` with tokens split to at most `max_chunk_bytes` bytes (None: unchanged)."""
    return tokenizer if max_chunk_bytes is None else ChunkedTokenizer(tokenizer, max_chunk_bytes)
