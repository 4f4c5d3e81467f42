"""Token shards on disk: flat numpy files of at most `shard_tokens` ids, read back as memmaps.

A split is the concatenation of its shards `{split}_00000.bin, {split}_00001.bin, ...` (nanoGPT's
flat `.bin` layout, cut into bounded files). A shard is written under a `.partial` name and
renamed when full, so a kill leaves only complete shards plus one partial file to discard.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, List, Optional, Sequence, Union

import numpy as np

MAX_UINT16_VOCAB = 1 << 16


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= MAX_UINT16_VOCAB else np.uint32)


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}.bin"


class ShardWriter:
    """Appends ids to the shards of one split, starting after `done` complete shards."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int, done: int):
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.index = done
        for stale in folder.glob(f"{split}_*.bin*"):  # the partial shard, or shards past `done`
            if stale.name.endswith(".partial") or int(stale.stem.split("_")[-1]) >= done:
                stale.unlink()
        self._file: Optional[BinaryIO] = None
        self._count = 0

    def room(self) -> int:
        return self.shard_tokens - self._count

    def append(self, ids: np.ndarray) -> None:
        assert len(ids) <= self.room() and ids.dtype == self.dtype
        if self._file is None:
            self._file = open(self._partial(), "wb")
        ids.tofile(self._file)
        self._count += len(ids)

    def close_shard(self) -> bool:
        """Complete the current shard (if it holds any ids); True when one was completed."""
        if self._file is None:
            return False
        self._file.close()
        self._partial().rename(self.folder / shard_name(self.split, self.index))
        self._file, self._count = None, 0
        self.index += 1
        return True

    def _partial(self) -> Path:
        return self.folder / (shard_name(self.split, self.index) + ".partial")


class ShardedTokens:
    """The shards of a split seen as one read-only 1-D array: `len()`, `[i]` and `[a:b]` slices."""

    def __init__(self, files: Sequence[Path], dtype: Union[np.dtype, str]):
        self.dtype = np.dtype(dtype)
        self.shards: List[np.ndarray] = [np.memmap(f, dtype=self.dtype, mode="r") for f in files
                                         if f.stat().st_size]
        self._ends = np.cumsum([len(s) for s in self.shards], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, key: Union[int, slice]):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("ShardedTokens supports contiguous slices only")
            return self._read(start, max(start, stop))
        i = key + len(self) if key < 0 else key
        if not 0 <= i < len(self):
            raise IndexError(f"index {key} out of range for {len(self)} tokens")
        return self._read(i, i + 1)[0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        """A copy of ids [start, stop), read across shard boundaries."""
        k = int(np.searchsorted(self._ends, start, side="right"))
        parts = []
        while start < stop:
            begin = int(self._ends[k - 1]) if k else 0
            take = min(stop, int(self._ends[k])) - start
            parts.append(self.shards[k][start - begin:start - begin + take])
            start += take
            k += 1
        return np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)
