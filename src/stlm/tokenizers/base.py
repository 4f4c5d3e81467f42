"""One interface for every tokenizer: byte-level, trained BPE, and GPT-2 through tiktoken.

Every tokenizer maps each id to a fixed byte string (`token_bytes`), so `decode(encode(x)) == x`
for any UTF-8 text and bits-per-byte can be computed from token ids alone: special tokens (end of
text) are zero bytes long and never inflate a byte count (the STLM code counted pad strings).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from stlm.fileio import write_atomic

EOT_TEXT = "<|endoftext|>"  # the end-of-text special token's name (GPT-2's)
META_FILE = "stlm_tokenizer.json"  # what `save` writes next to the kind's own files


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

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence id, for tokenizers that define one (an imported Hugging Face
        tokenizer); stlm's own tokenizers have none: end-of-text starts every sequence."""
        return None

    def prefix_id(self, chosen: int | None = None) -> tuple[int, str]:
        """The token an empty context is scored after, and where it came from (lm-eval's
        `prefix_token_id` rule): a `chosen` id, else BOS, else end-of-text."""
        if chosen is not None:
            if not 0 <= chosen < self.vocab_size:
                from stlm.errors import UserError

                raise UserError(f"prefix token id {chosen} is outside the vocabulary (0..{self.vocab_size - 1})")
            return chosen, "chosen"
        if self.bos_id is not None:
            return self.bos_id, "bos"
        return self.eot_id, "eot"

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids for `text`; never inserts special tokens (their text is encoded as ordinary text)."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of one id (b"" for special tokens)."""

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_bytes(int(i)) for i in ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_table(self) -> list[bytes]:
        """`token_bytes` of every id, computed once."""
        if getattr(self, "_token_table", None) is None:
            self._token_table = [self.token_bytes(i) for i in range(self.vocab_size)]
        return self._token_table

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 length in bytes of every id (0 for specials): the bits-per-byte denominator."""
        if getattr(self, "_byte_lengths", None) is None:
            self._byte_lengths = np.array([len(b) for b in self.token_table()], dtype=np.int64)
        return self._byte_lengths

    def fingerprint(self) -> str:
        """A hash that changes whenever any id would map to different bytes (computed once)."""
        if getattr(self, "_fingerprint", None) is None:
            table = self.token_table()
            h = hashlib.sha256(f"{self.kind}:{self.vocab_size}:{self.eot_id}".encode())
            h.update(np.array([len(b) for b in table], dtype="<u4").tobytes())
            h.update(b"".join(table))
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def meta(self) -> dict:
        """What `save` records in stlm_tokenizer.json and `load_tokenizer` checks."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "eot_id": self.eot_id,
                "fingerprint": self.fingerprint()}

    def save(self, directory: str | Path) -> None:
        """Write the kind's own files, then stlm_tokenizer.json (last, so its presence means complete)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        write_atomic(directory / META_FILE, json.dumps(self.meta(), indent=2).encode())

    @abstractmethod
    def _save_files(self, directory: Path) -> None:
        """Write the files this kind needs to be rebuilt by `stlm.tokenizers.load_tokenizer`."""
