"""A Hugging Face tokenizer (its `tokenizer.json`) behind stlm's interface: the tokenizer of an
imported model (`stlm import`), usable for evaluation, generation and preparing data to fine-tune.

It keeps the model's own special tokens: end-of-text is the tokenizer's EOS, and `bos_id` its BOS
(the prefix of an empty context, as lm-evaluation-harness uses it). Unlike stlm's own kinds it
encodes exactly as transformers does by default, special tokens included (a Llama tokenizer puts
BOS first): that is how the model was trained and how lm-eval's `hf` backend scores it.
Each id's bytes come from the vocabulary: GPT-2-style byte-level tokens through the byte alphabet,
SentencePiece-style tokens with '▁' as a space and `<0xNN>` byte-fallback tokens as that byte;
special tokens are zero bytes long.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from tokenizers import Tokenizer as RustTokenizer

from stlm.errors import UserError
from stlm.tokenizers.base import Tokenizer, write_atomic
from stlm.tokenizers.bpe import UNICODE_TO_BYTE

HF_FILE = "tokenizer.json"
SPECIALS_FILE = "hf_special_tokens.json"  # {"bos_id": int | null, "eos_id": int}
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class HFTokenizer(Tokenizer):
    kind = "hf"

    def __init__(self, rust: RustTokenizer, eos_id: int | None, bos_id: int | None, source: str = "the tokenizer"):
        if eos_id is None:
            raise UserError(f"{source} has no end-of-sequence token; stlm needs one to separate documents")
        self._rust, self._eos, self._bos = rust, int(eos_id), None if bos_id is None else int(bos_id)
        decoder = json.loads(rust.to_str()).get("decoder") or {}
        byte_level = "ByteLevel" in json.dumps(decoder)
        specials = {i for i, t in rust.get_added_tokens_decoder().items() if t.special}
        table = []
        for i in range(rust.get_vocab_size(with_added_tokens=True)):
            token = rust.id_to_token(i)
            if token is None or i in specials:
                table.append(b"")
            elif byte_level and all(c in UNICODE_TO_BYTE for c in token):
                table.append(bytes(UNICODE_TO_BYTE[c] for c in token))
            elif _BYTE_TOKEN.fullmatch(token):
                table.append(bytes([int(_BYTE_TOKEN.fullmatch(token).group(1), 16)]))
            else:
                table.append(token.replace("\u2581", " ").encode("utf-8"))
        self._token_table = table

    @classmethod
    def from_pretrained(cls, folder: str | Path, gguf_file: str | None = None) -> HFTokenizer:
        """The tokenizer of a transformers model folder, or the one a GGUF file in it describes
        (`gguf_file`, rebuilt by transformers from the file's metadata); needs `transformers`."""
        from transformers import AutoTokenizer

        source = str(Path(folder) / gguf_file) if gguf_file else str(folder)
        needs = "tokenizer metadata transformers can convert" if gguf_file else \
            "tokenizer.json (or files transformers converts to it)"
        try:
            fast = AutoTokenizer.from_pretrained(str(folder), **({"gguf_file": gguf_file} if gguf_file else {}))
        except Exception as e:  # noqa: BLE001  (transformers raises many kinds)
            raise UserError(f"cannot load the tokenizer of {source} ({type(e).__name__}: {e}); it needs {needs}") from e
        if not getattr(fast, "is_fast", False):
            raise UserError(f"the tokenizer of {source} has no fast (tokenizer.json) form")
        rust = RustTokenizer.from_str(fast.backend_tokenizer.to_str())
        return cls(rust, fast.eos_token_id, fast.bos_token_id, source=source)

    @classmethod
    def from_dir(cls, directory: str | Path) -> HFTokenizer:
        """Load what `save` wrote."""
        directory = Path(directory)
        path, specials = directory / HF_FILE, directory / SPECIALS_FILE
        for f in (path, specials):
            if not f.is_file():
                raise UserError(f"{f} is missing from the saved Hugging Face tokenizer")
        try:
            rust = RustTokenizer.from_file(str(path))
            ids = json.loads(specials.read_text())
            eos, bos = ids["eos_id"], ids.get("bos_id")
        except Exception as e:  # noqa: BLE001  (tokenizers raises a bare Exception on bad JSON)
            raise UserError(f"the tokenizer in {directory} is corrupt ({e})") from e
        return cls(rust, eos, bos, source=str(directory))

    @property
    def vocab_size(self) -> int:
        return len(self._token_table)

    @property
    def eot_id(self) -> int:
        return self._eos

    @property
    def bos_id(self) -> int | None:
        return self._bos

    def encode(self, text: str) -> list[int]:
        return self._rust.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._rust.encode_batch(list(texts))]

    def token_bytes(self, token_id: int) -> bytes:
        return self._token_table[token_id]

    def _save_files(self, directory: Path) -> None:
        write_atomic(directory / HF_FILE, self._rust.to_str().encode())
        write_atomic(directory / SPECIALS_FILE, json.dumps({"bos_id": self._bos, "eos_id": self._eos}).encode())
