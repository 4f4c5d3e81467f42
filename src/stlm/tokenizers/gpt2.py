"""GPT-2's byte-level BPE (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners") through tiktoken, read offline from `r50k_base.tiktoken`.

The file is looked up in: the config path, $STLM_GPT2_BPE, tiktoken's cache; then downloaded into
tiktoken's cache. Its sha256 is checked against the official one, so ids never silently change.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

import tiktoken

from stlm.errors import UserError
from stlm.fileio import write_atomic
from stlm.tokenizers.base import EOT_TEXT, Tokenizer

R50K_FILE = "r50k_base.tiktoken"
R50K_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# tiktoken_ext/openai_public.py: r50k_pat_str (GPT-2's pre-tokenisation regex)
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_VOCAB_SIZE = 50257
GPT2_EOT_ID = 50256
DOWNLOAD_TIMEOUT_S = 10.0


class GPT2Tokenizer(Tokenizer):
    kind = "gpt2"

    def __init__(self, path: str | Path):
        """Load exactly the r50k_base.tiktoken at `path` (see `find` for the search)."""
        self.path = Path(path)
        data = _read_verified(self.path)
        ranks = {}
        for line in data.splitlines():  # the format of tiktoken.load.load_tiktoken_bpe
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        if sorted(ranks.values()) != list(range(GPT2_EOT_ID)):
            raise UserError(f"{self.path} does not hold ranks 0..{GPT2_EOT_ID - 1}")
        self._enc = tiktoken.Encoding(name="gpt2", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks,
                                      special_tokens={EOT_TEXT: GPT2_EOT_ID})

    @classmethod
    def find(cls, path: str | Path | None = None) -> GPT2Tokenizer:
        """Search `path` (a file or a folder holding r50k_base.tiktoken), $STLM_GPT2_BPE, tiktoken's
        cache, then download into that cache; raise `UserError` naming every place tried."""
        tried = []
        for label, candidate in (("data.tokenizer.path", path),
                                 ("$STLM_GPT2_BPE", os.environ.get("STLM_GPT2_BPE"))):
            if candidate:
                file = Path(candidate) / R50K_FILE if Path(candidate).is_dir() else Path(candidate)
                if file.is_file():
                    return cls(file)
                tried.append(f"{label}={file}")
        cached = _cache_path()
        if cached.is_file():
            return cls(cached)
        tried.append(f"tiktoken cache {cached}")
        try:
            _download(cached)
        except OSError as e:
            tried.append(f"download {R50K_URL} ({e})")
            raise UserError(
                f"GPT-2 BPE file {R50K_FILE} not found; tried: {'; '.join(tried)}. Fix: set "
                f"data.tokenizer.path=DIR (a folder holding {R50K_FILE}, e.g. gpt2-bpe/ in the data "
                f"folder, docs/data.md) or "
                f"export STLM_GPT2_BPE=/path/to/{R50K_FILE}") from e
        return cls(cached)

    @property
    def vocab_size(self) -> int:
        return GPT2_VOCAB_SIZE

    @property
    def eot_id(self) -> int:
        return GPT2_EOT_ID

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encodes in parallel threads."""
        return self._enc.encode_ordinary_batch(list(texts))

    def token_bytes(self, token_id: int) -> bytes:
        return b"" if token_id == GPT2_EOT_ID else self._enc.decode_single_token_bytes(token_id)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._enc.decode_bytes([i for i in map(int, ids) if i != GPT2_EOT_ID])

    def _save_files(self, directory: Path) -> None:
        if (directory / R50K_FILE).resolve() != self.path.resolve():
            write_atomic(directory / R50K_FILE, self.path.read_bytes())


def _read_verified(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != R50K_SHA256:
        raise UserError(f"{path} has sha256 {digest}, not the official {R50K_SHA256} of {R50K_FILE}; "
                        f"replace it with the official file ({R50K_URL})")
    return data


def _cache_path() -> Path:
    """Where tiktoken caches the file: named by the sha1 of its URL (tiktoken.load.read_file_cached)."""
    cache_dir = (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
                 or os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    return Path(cache_dir) / hashlib.sha1(R50K_URL.encode()).hexdigest()


def _download(target: Path) -> None:
    """Fetch the official file into `target` (temporary name, hash check, rename)."""
    with urllib.request.urlopen(R50K_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != R50K_SHA256:
        raise OSError(f"downloaded {R50K_URL} does not have the official sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
