"""Byte-level BPE trained on the corpus (Sennrich et al. 2016, https://arxiv.org/abs/1508.07909;
byte-level as in GPT-2, Radford et al. 2019), through Hugging Face `tokenizers`.

All 256 bytes are in the initial alphabet, so any UTF-8 text round-trips. Each vocabulary entry is
a string over GPT-2's byte-to-unicode alphabet; `token_bytes` maps it back to the exact bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from stlm.errors import UserError
from stlm.fileio import write_atomic
from stlm.tokenizers.base import EOT_TEXT, Tokenizer

log = logging.getLogger(__name__)

HF_FILE = "tokenizer.json"
MIN_VOCAB = 257  # 256 single bytes + end-of-text
# Longest piece of text the BPE trainer sees at once. Its time grows with the square of the longest
# pre-tokenized "word", and a document without spaces (base64, a minified file, a binary file
# decoded as text) is one huge word: longer documents are cut, at whitespace where there is any.
MAX_TRAIN_PIECE_CHARS = 4096


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (the alphabet of ByteLevel vocabularies)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return chars


UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, hf: HFTokenizer, source: str = "the trained tokenizer"):
        if not isinstance(hf.pre_tokenizer, pre_tokenizers.ByteLevel) or hf.normalizer is not None:
            raise UserError(f"{source} is not a byte-level BPE without normaliser; train one with "
                            f"data.tokenizer.kind=bpe (and no data.tokenizer.path)")
        eot = hf.token_to_id(EOT_TEXT)
        if eot is None:
            raise UserError(f"{source} has no {EOT_TEXT} token; retrain it with data.tokenizer.kind=bpe")
        hf.encode_special_tokens = True  # "<|endoftext|>" in text is ordinary text, never the eot id
        self._hf, self._eot = hf, eot
        specials = {i for i, t in hf.get_added_tokens_decoder().items() if t.special}
        table = []
        for i in range(hf.get_vocab_size(with_added_tokens=True)):
            token = hf.id_to_token(i)
            if token is None or (i not in specials and any(c not in UNICODE_TO_BYTE for c in token)):
                raise UserError(f"{source}: id {i} is not a byte-level token ({token!r}); "
                                f"retrain it with data.tokenizer.kind=bpe")
            table.append(b"" if i in specials else bytes(UNICODE_TO_BYTE[c] for c in token))
        self._token_table = table

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, max_chars: int | None = None) -> BPETokenizer:
        """Learn `vocab_size` ids (specials included) from the first `max_chars` characters of `texts`."""
        if vocab_size < MIN_VOCAB:
            raise UserError(f"data.tokenizer.vocab_size={vocab_size} is too small for byte-level BPE: "
                            f"it needs at least {MIN_VOCAB} (256 bytes + end-of-text)")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=[EOT_TEXT])
        seen = [0]
        hf.train_from_iterator(_take_chars(texts, max_chars, seen), trainer=trainer)
        if seen[0] == 0:
            raise UserError("BPE training got no text: the corpus is empty (check data.sources)")
        tok = cls(hf)
        if tok.vocab_size < vocab_size:
            log.warning("BPE vocabulary has %d ids, fewer than the requested %d: the %d training "
                        "characters have no more pairs to merge", tok.vocab_size, vocab_size, seen[0])
        return tok

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        """Load a tokenizer.json (or a folder holding one) written by `save` or by `tokenizers`."""
        path = Path(path)
        if path.is_dir():
            path = path / HF_FILE
        if not path.is_file():
            raise UserError(f"BPE tokenizer file {path} does not exist; set data.tokenizer.path to a "
                            f"tokenizer.json, or leave it unset to train one")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise UserError(f"BPE tokenizer file {path} is corrupt ({e}); delete it and retrain") from e
        return cls(hf, source=str(path))

    @property
    def vocab_size(self) -> int:
        return len(self._token_table)

    @property
    def eot_id(self) -> int:
        return self._eot

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encodes in parallel in Rust."""
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def token_bytes(self, token_id: int) -> bytes:
        return self._token_table[token_id]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        table = self._token_table
        return b"".join(table[int(i)] for i in ids)

    def _save_files(self, directory: Path) -> None:
        write_atomic(directory / HF_FILE, self._hf.to_str().encode())


def training_pieces(text: str, limit: int = MAX_TRAIN_PIECE_CHARS) -> Iterator[str]:
    """`text` in consecutive pieces of at most `limit` characters, each cut just before the last
    space or newline inside its window when there is one (so a word keeps its leading space, as
    the byte-level pre-tokenizer splits it, and ordinary words are never split)."""
    start = 0
    while len(text) - start > limit:
        end = start + limit
        cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
        end = cut if cut > start else end
        yield text[start:end]
        start = end
    if start < len(text):
        yield text[start:]


def _take_chars(texts: Iterable[str], max_chars: int | None, seen: list[int]) -> Iterator[str]:
    """Stream `texts` as training pieces, cut to `max_chars` characters in all; `seen[0]` counts
    what was yielded."""
    for text in (piece for doc in texts for piece in training_pieces(doc)):
        if max_chars is not None and seen[0] + len(text) >= max_chars:
            text = text[: max_chars - seen[0]]
            seen[0] += len(text)
            if text:
                yield text
            return
        seen[0] += len(text)
        yield text
