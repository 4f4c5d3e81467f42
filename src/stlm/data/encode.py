"""Tokenize a stream of documents in order on `num_proc` processes, with bounded memory.

Documents are grouped into chunks of about `CHUNK_CHARS` characters; each chunk becomes one flat
token array in which every document is followed by the end-of-text id. At most two chunks per
process are in flight (a multiprocessing Pool fed through a bounded window rather than `imap`,
whose feeder thread would read the whole corpus ahead), and results come back in submission order,
so the output is byte-identical whatever `num_proc` is. Each worker encodes one document at a
time on one thread: `num_proc` is the only parallelism.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Deque, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from stlm.data.sources import Doc
from stlm.tokenizers import Tokenizer, load_tokenizer

CHUNK_CHARS = 1 << 20
IN_FLIGHT_PER_PROC = 2


@dataclass
class Chunk:
    tokens: np.ndarray  # flat ids of its documents, each followed by end-of-text
    lengths: np.ndarray  # tokens of each document, end-of-text included
    bad: np.ndarray  # invalid UTF-8 replacements counted while reading each document


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], dtype: np.dtype) -> Tuple[np.ndarray, np.ndarray]:
    """Flat ids of `texts` (each followed by end-of-text) and the length of each."""
    ids = [tokenizer.encode(t) for t in texts]
    for x in ids:
        x.append(tokenizer.eot_id)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    return np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum())), lengths


_worker_tokenizer: Optional[Tokenizer] = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = load_tokenizer(tokenizer_dir)


def _encode_in_worker(texts: List[str], dtype: np.dtype) -> Tuple[np.ndarray, np.ndarray]:
    assert _worker_tokenizer is not None
    return encode_texts(_worker_tokenizer, texts, dtype)


def _chunks(docs: Iterable[Doc]) -> Iterator[Tuple[List[str], List[int]]]:
    texts: List[str] = []
    bad: List[int] = []
    size = 0
    for text, n_bad in docs:
        texts.append(text)
        bad.append(n_bad)
        size += len(text)
        if size >= CHUNK_CHARS:
            yield texts, bad
            texts, bad, size = [], [], 0
    if texts:
        yield texts, bad


class Encoder:
    """Ordered, bounded tokenization of document streams; a process pool when num_proc > 1."""

    def __init__(self, tokenizer: Tokenizer, tokenizer_dir: Path, dtype: np.dtype, num_proc: int):
        self.tokenizer, self.dtype, self.num_proc = tokenizer, dtype, num_proc
        self.pool = None
        if num_proc > 1:
            # fork on Linux: workers start at once and need no `if __name__ == "__main__"` guard in
            # the caller's script; they only run the tokenizer, untouched by the parent's threads
            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            self.pool = ctx.Pool(num_proc, _init_worker, (str(tokenizer_dir),))

    def encode(self, docs: Iterable[Doc]) -> Iterator[Chunk]:
        if self.pool is None:
            for texts, bad in _chunks(docs):
                yield Chunk(*encode_texts(self.tokenizer, texts, self.dtype), np.asarray(bad))
            return
        pending: Deque = deque()
        for texts, bad in _chunks(docs):
            pending.append((self.pool.apply_async(_encode_in_worker, (texts, self.dtype)), bad))
            if len(pending) >= IN_FLIGHT_PER_PROC * self.num_proc:
                result, bad_left = pending.popleft()
                yield Chunk(*result.get(), np.asarray(bad_left))
        while pending:
            result, bad_left = pending.popleft()
            yield Chunk(*result.get(), np.asarray(bad_left))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
