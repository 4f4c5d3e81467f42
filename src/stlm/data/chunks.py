"""Chunks: the byte strings a byte-level model reads and writes in place of token ids.

A chunk is one token's exact bytes (`Tokenizer.token_bytes`; with `data.tokenizer.max_chunk_bytes`
long tokens are split, see `stlm.tokenizers.chunked`). The model's ids stay token ids: its byte
embedder and byte decoder hold `chunk_table(tokenizer, width)`, id -> symbols (padded) and length,
so batches, scoring and bits per byte need nothing new.

Symbols: 0-255 are bytes, `EOT_SYMBOL` (256) is end of text, the whole chunk of the tokenizer's
end-of-text id (one reserved symbol, never the 13 bytes of "<|endoftext|>"), and `EOC` (257),
end of chunk, is what the decoder predicts after a chunk's last symbol, so chunk length is
modelled. Ids with no chunk (padding rows of the vocabulary, long ids a chunked tokenizer never
produces) have length 0.

`Utf8` is the UTF-8 validity automaton (RFC 3629) used by generation to emit only valid UTF-8.
"""

from __future__ import annotations

import numpy as np
import torch

from stlm.errors import UserError
from stlm.tokenizers.base import Tokenizer
from stlm.tokenizers.byte import BYTE_EOT_ID

EOT_SYMBOL = 256
EOC = 257
N_INPUT_SYMBOLS = 257  # bytes + end of text: what a chunk holds
N_SYMBOLS = 258  # + end of chunk: what the decoder predicts


def chunk_table(tokenizer: Tokenizer, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vocab, width) symbols and (vocab,) lengths of every id of `tokenizer`."""
    unused = tokenizer.unused_ids() if hasattr(tokenizer, "unused_ids") else set()
    rows = []
    for i, b in enumerate(tokenizer.token_table()):
        if i == tokenizer.eot_id:
            rows.append([EOT_SYMBOL])
        elif i in unused:
            rows.append([])
        elif len(b) > width:
            longest = max(len(t) for t in tokenizer.token_table())
            raise UserError(f"the tokenizer has tokens of up to {longest} bytes but the model's chunks "
                            f"hold {width} (model.byte_chunk_max); set data.tokenizer.max_chunk_bytes="
                            f"{width} to split longer tokens")
        else:
            rows.append(list(b))
    return pack_rows(rows, width)


def default_table(vocab_size: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The table before a tokenizer is attached: the byte tokenizer's (id i < 256 is byte i, 256
    is end of text); larger ids have no chunk."""
    rows = [[i] for i in range(256)] + [[EOT_SYMBOL]]
    rows = (rows + [[] for _ in range(max(0, vocab_size - len(rows)))])[:vocab_size]
    assert BYTE_EOT_ID == 256
    return pack_rows(rows, width)


def pack_rows(rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    table = np.zeros((len(rows), width), dtype=np.int64)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return torch.from_numpy(table), torch.from_numpy(lengths)


class Utf8:
    """States of the UTF-8 validity automaton: 0 is a character boundary, `ERROR` is invalid."""

    ERROR = 8
    N_STATES = 9

    @staticmethod
    def transitions() -> torch.Tensor:
        """(N_STATES, N_INPUT_SYMBOLS) next state; end of text is allowed at a boundary only."""
        t = torch.full((Utf8.N_STATES, N_INPUT_SYMBOLS), Utf8.ERROR, dtype=torch.long)
        lead = t[0]
        lead[0x00:0x80] = 0
        lead[0xC2:0xE0] = 1
        lead[0xE0] = 4
        lead[0xE1:0xED] = 2
        lead[0xED] = 5
        lead[0xEE:0xF0] = 2
        lead[0xF0] = 6
        lead[0xF1:0xF4] = 3
        lead[0xF4] = 7
        lead[EOT_SYMBOL] = 0
        t[1, 0x80:0xC0] = 0  # one continuation byte left
        t[2, 0x80:0xC0] = 1
        t[3, 0x80:0xC0] = 2
        t[4, 0xA0:0xC0] = 1  # after E0: no overlong forms
        t[5, 0x80:0xA0] = 1  # after ED: no surrogates
        t[6, 0x90:0xC0] = 2  # after F0: no overlong forms
        t[7, 0x80:0x90] = 2  # after F4: nothing above U+10FFFF
        return t

    @staticmethod
    def run(table: torch.Tensor, lengths: torch.Tensor, start: int) -> torch.Tensor:
        """The state after each row's symbols, starting in `start` (ERROR once invalid)."""
        trans = Utf8.transitions().to(table.device)
        state = torch.full(lengths.shape, start, dtype=torch.long, device=table.device)
        for k in range(table.shape[1]):
            live = lengths > k
            state = torch.where(live, trans[state, table[:, k]], state)
        return state

    @staticmethod
    def state_after(data: bytes) -> int:
        """The state after valid UTF-8 `data` (from its last character start)."""
        start = len(data)
        while start > max(0, len(data) - 4):
            start -= 1
            if data[start] & 0xC0 != 0x80:
                break
        trans = Utf8.transitions()
        state = 0
        for b in data[start:]:
            state = int(trans[state, b])
        return 0 if state == Utf8.ERROR else state
