"""One interface for every tokenizer: byte-level, trained BPE, and GPT-2 through tiktoken.

Every tokenizer maps each id to a fixed byte string (`token_bytes`), so `decode(encode(x)) == x`
for any UTF-8 text and bits-per-byte can be computed from token ids alone: special tokens (end of
text) are zero bytes long and never inflate a byte count (the STLM code counted pad strings).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class Tokenizer(ABC):
    kind: str = ""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, specials included."""

    @property
    @abstractmethod
    def eot_id(self) -> int:
        """End-of-text id: separates documents and starts a scored sentence."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids for `text`; never inserts special tokens."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of one id (b"" for special tokens)."""

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_bytes(int(i)) for i in ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 length in bytes of every id (0 for specials): the bits-per-byte denominator."""
        if getattr(self, "_byte_lengths", None) is None:
            self._byte_lengths = np.array([len(self.token_bytes(i)) for i in range(self.vocab_size)],
                                          dtype=np.int64)
        return self._byte_lengths

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the files `stlm.tokenizers.load_tokenizer(directory)` needs, plus tokenizer.json meta."""

    def fingerprint(self) -> str:
        """A hash that changes whenever any id would map to different bytes."""
        h = hashlib.sha256(f"{self.kind}:{self.vocab_size}:{self.eot_id}".encode())
        for i in range(self.vocab_size):
            h.update(len(self.token_bytes(i)).to_bytes(4, "little"))
            h.update(self.token_bytes(i))
        return h.hexdigest()[:16]
