"""Prepare a corpus: tokenize its splits into cached on-disk shards (nanoGPT's prepare.py, streamed).

`prepare_data(cfg)` returns the cached result when it exists. Otherwise it streams each split's
documents (sources, mixes and stages), tokenizes them in ordered parallel chunks, and writes
fixed-size shards into a temporary folder, saving its progress after every complete shard: a
rerun after a kill continues after the last complete shard and produces the same bytes. The folder
is renamed to `cache_dir/<name>-<key>/` only when complete, so a valid-looking cache is always a
complete one. The key hashes the source configs, the tokenizer fingerprint and the settings that
change the token stream. A BPE tokenizer is trained on the train split's text and cached the same
way (`cache_dir/tokenizer-bpe<V>-<key>/`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import numpy as np

from stlm.config.schema import DataConfig
from stlm.data.encode import Encoder
from stlm.data.mix import mix, stages, training_text
from stlm.data.shards import ShardedTokens, ShardWriter, dtype_for, shard_name
from stlm.data.sources import SPLITS, is_endless
from stlm.errors import DISK_ERRNOS, UserError, disk_fix
from stlm.output_paths import writable_folder
from stlm.tokenizers import Tokenizer, build_tokenizer, load_tokenizer
from stlm.fileio import write_atomic
from stlm.tokenizers.base import META_FILE as TOKENIZER_META
from stlm.tokenizers.chunked import with_chunk_limit

FORMAT_VERSION = 1
META_FILE = "meta.json"
PROGRESS_FILE = "progress.json"
TOKENIZER_DIR = "tokenizer"
PARTIAL = ".partial"


@dataclass
class PreparedData:
    """A prepared corpus: the folder of shards, its tokenizer, and its meta.json."""

    path: Path
    tokenizer: Tokenizer
    meta: dict

    def tokens(self, split: str) -> ShardedTokens:
        """All ids of `split` ("train" or "val") as one read-only array (memmapped shards)."""
        if split not in self.meta["splits"]:
            raise ValueError(f"no split {split!r}; prepared splits: {', '.join(self.meta['splits'])}")
        files = [self.path / name for name in self.meta["splits"][split]["shards"]]
        return ShardedTokens(files, self.meta["dtype"])

    @classmethod
    def load(cls, path: Path) -> PreparedData:
        meta = json.loads((path / META_FILE).read_text())
        tokenizer = load_tokenizer(path / TOKENIZER_DIR)
        if tokenizer.fingerprint() != meta["tokenizer"]["fingerprint"]:
            raise UserError(f"{path}: its tokenizer does not match meta.json; delete the folder to "
                            f"prepare it again")
        return cls(path, tokenizer, meta)


@dataclass
class SplitProgress:
    """Where writing one split stands; saved after every complete shard."""

    shards: int = 0
    tokens: int = 0
    bytes: int = 0
    documents: int = 0
    invalid_utf8_replacements: int = 0
    stage: int = 0
    stage_tokens: List[int] = field(default_factory=list)
    doc_index: int = 0  # next document of the current stage's stream ...
    doc_offset: int = 0  # ... and how many of its ids are already written
    done: bool = False


def prepare_data(cfg: DataConfig, progress: bool = True) -> PreparedData:
    """Tokenize the corpus `cfg` describes into cached shards (or load them from the cache)."""
    _validate(cfg)
    cache = Path(cfg.cache_dir).expanduser()
    try:
        return _prepare_cached(cfg, cache, progress)
    except OSError as exc:  # a full disk or an unwritable cache: one line, the partial work kept
        if exc.errno not in (*DISK_ERRNOS, errno.ENOENT) or not str(exc.filename or "").startswith(str(cache)):
            raise
        raise UserError(f"cannot write the data cache: {exc.filename} ({exc.strerror}); {disk_fix(exc)} "
                        "(data.cache_dir=); an interrupted preparation continues where it stopped") from exc


def _prepare_cached(cfg: DataConfig, cache: Path, progress: bool) -> PreparedData:
    writable_folder(cache, "prepared data", "set data.cache_dir=DIR to a writable folder")
    with _locked(cache / f".{cfg.name}.lock"):  # one preparer per corpus name (e.g. DDP ranks)
        tokenizer = with_chunk_limit(_tokenizer(cfg, cache, progress), cfg.tokenizer.max_chunk_bytes)
        key = _hash({"corpus": _corpus(cfg), "tokenizer": tokenizer.fingerprint(),
                     "max_train_tokens": cfg.max_train_tokens, "max_val_tokens": cfg.max_val_tokens,
                     "shard_tokens": cfg.shard_tokens, "version": FORMAT_VERSION})
        final = cache / f"{cfg.name}-{key}"
        if not (final / META_FILE).is_file():
            _prepare(cfg, tokenizer, key, final, progress)
    return PreparedData.load(final)


def _prepare(cfg: DataConfig, tokenizer: Tokenizer, key: str, final: Path, progress: bool) -> None:
    work = final.with_name(f".{final.name}{PARTIAL}")
    work.mkdir(exist_ok=True)
    tokenizer.save(work / TOKENIZER_DIR)
    state = _load_progress(work, key)

    def save() -> None:
        payload = {"key": key, "splits": {s: asdict(p) for s, p in state.items()}}
        write_atomic(work / PROGRESS_FILE, json.dumps(payload, indent=1).encode())

    dtype = dtype_for(tokenizer.vocab_size)
    with Encoder(tokenizer, work / TOKENIZER_DIR, dtype, cfg.num_proc) as encoder:
        for split in SPLITS:
            prog = state.setdefault(split, SplitProgress())
            if not prog.done:
                _write_split(cfg, split, tokenizer, encoder, work, prog, save, _reporter(cfg, split, progress))
            if prog.tokens == 0:
                names = ", ".join(f"{src.name}" + (f" ({src.path})" if src.path else "")
                                  for stage in stages(cfg, split) for _, src in stage.sources)
                fix = ("raise data.val_fraction (e.g. 0.1) or add documents" if split == "val"
                       else "check the sources' files and max_documents")
                raise UserError(f"the {split} split of '{cfg.name}' is empty: no documents from {names}; "
                                f"{fix}")
    meta = {
        "version": FORMAT_VERSION, "name": cfg.name, "key": key,
        "tokenizer": tokenizer.meta(), "dtype": dtype.name, "shard_tokens": cfg.shard_tokens,
        "corpus": _corpus(cfg), "max_train_tokens": cfg.max_train_tokens, "max_val_tokens": cfg.max_val_tokens,
        "splits": {split: {"tokens": p.tokens, "bytes": p.bytes, "documents": p.documents,
                           "invalid_utf8_replacements": p.invalid_utf8_replacements,
                           "stage_tokens": p.stage_tokens,
                           "shards": [shard_name(split, i) for i in range(p.shards)]}
                   for split, p in state.items()},
    }
    (work / PROGRESS_FILE).unlink()
    write_atomic(work / META_FILE, json.dumps(meta, indent=2).encode())
    os.rename(work, final)


def _write_split(cfg: DataConfig, split: str, tokenizer: Tokenizer, encoder: Encoder, folder: Path,
                 prog: SplitProgress, save: Callable[[], None], report: Callable[[SplitProgress], None]) -> None:
    """Stream the split's stages into shards, resuming from `prog`; cut exactly at token limits."""
    plan = stages(cfg, split)
    prog.stage_tokens = prog.stage_tokens or [0] * len(plan)
    cap = cfg.max_train_tokens if split == "train" else cfg.max_val_tokens
    writer = ShardWriter(folder, split, dtype_for(tokenizer.vocab_size), cfg.shard_tokens, prog.shards)
    byte_lengths = tokenizer.byte_lengths()

    def left(k: int) -> float:
        limit = plan[k].tokens
        return min(float("inf") if cap is None else cap - prog.tokens,
                   float("inf") if limit is None else limit - prog.stage_tokens[k])

    for k in range(prog.stage, len(plan)):
        if k != prog.stage:
            prog.stage, prog.doc_index, prog.doc_offset = k, 0, 0
        if left(k) <= 0:
            continue
        first, skip = prog.doc_index, prog.doc_offset
        docs = islice(mix(plan[k].sources, split, cfg), first, None)
        for chunk in encoder.encode(docs):
            ends = np.cumsum(chunk.lengths)
            starts = ends - chunk.lengths
            pos, skip = skip, 0
            while pos < len(chunk.tokens) and left(k) > 0:
                n = int(min(len(chunk.tokens) - pos, writer.room(), left(k)))
                piece = chunk.tokens[pos:pos + n]
                writer.append(piece)
                a, b = np.searchsorted(starts, [pos, pos + n])  # documents that start in the piece
                prog.documents += int(b - a)
                prog.invalid_utf8_replacements += int(chunk.bad[a:b].sum())
                prog.tokens += n
                prog.stage_tokens[k] += n
                prog.bytes += int(byte_lengths[piece].sum())
                pos += n
                j = int(np.searchsorted(ends, pos, side="right"))  # documents completed
                prog.doc_index = first + j
                prog.doc_offset = pos - int(starts[j]) if j < len(starts) else 0
                if writer.room() == 0:
                    writer.close_shard()
                    prog.shards = writer.index
                    save()
                    report(prog)
            first += len(chunk.lengths)
            if left(k) <= 0:
                break
    if writer.close_shard():
        prog.shards = writer.index
    prog.done = True
    save()
    report(prog)


def _reporter(cfg: DataConfig, split: str, enabled: bool) -> Callable[[SplitProgress], None]:
    """Print a progress line to stderr at most every few seconds (and when a split is done)."""
    start = last = time.perf_counter()

    def report(prog: SplitProgress) -> None:
        nonlocal last
        now = time.perf_counter()
        if enabled and (prog.done or now - last >= 5.0):
            last = now
            rate = prog.bytes / 1e6 / max(now - start, 1e-9)
            print(f"prepare {cfg.name} {split}: {prog.tokens:,} tokens, {prog.bytes / 1e6:,.1f} MB of "
                  f"text, {prog.shards} shards" + (" (done)" if prog.done else f", {rate:.1f} MB/s"),
                  file=sys.stderr, flush=True)

    return report


def _load_progress(work: Path, key: str) -> Dict[str, SplitProgress]:
    path = work / PROGRESS_FILE
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    if saved.get("key") != key:
        raise UserError(f"{work} belongs to another preparation; delete it and run again")
    return {split: SplitProgress(**p) for split, p in saved["splits"].items()}


# ---------------------------------------------------------------------------------------------
# Tokenizer, cache keys, validation
# ---------------------------------------------------------------------------------------------


def _tokenizer(cfg: DataConfig, cache: Path, progress: bool) -> Tokenizer:
    """The configured tokenizer; a BPE without a path is trained on the train split, and cached."""
    t = cfg.tokenizer
    if t.kind != "bpe" or t.path:
        return build_tokenizer(t, None)
    key = _hash({"corpus": _corpus(cfg), "vocab_size": t.vocab_size, "train_chars": t.train_chars,
                 "version": FORMAT_VERSION})
    folder = cache / f"tokenizer-bpe{t.vocab_size}-{key}"
    if not (folder / TOKENIZER_META).is_file():
        if progress:
            print(f"prepare {cfg.name}: training a BPE tokenizer ({t.vocab_size} ids) on up to "
                  f"{t.train_chars:,} characters of the train split", file=sys.stderr, flush=True)
        tokenizer = build_tokenizer(t, lambda: training_text(cfg, t.train_chars))
        work = folder.with_name(f".{folder.name}{PARTIAL}")
        shutil.rmtree(work, ignore_errors=True)
        tokenizer.save(work)
        os.rename(work, folder)
    return load_tokenizer(folder)


def _corpus(cfg: DataConfig) -> dict:
    """Everything that decides which documents make up the splits, as plain data."""
    corpus: dict = {"val_fraction": cfg.val_fraction, "invalid_utf8": cfg.invalid_utf8}
    if cfg.stages:
        corpus["stages"] = [asdict(stage) for stage in cfg.stages]
    else:
        corpus["sources"] = [asdict(src) for src in cfg.sources]
    corpus["files"] = [_file_identity(where, src.path)
                       for stage in stages(cfg, "train") for where, src in stage.sources if src.path]
    if any(src.name == "grammar" for stage in stages(cfg, "train") for _, src in stage.sources):
        corpus["grammar_code"] = grammar_code_hash()
    return corpus


def grammar_code_hash() -> str:
    """The built-in grammar's source code: an edited generator must not reuse stale shards."""
    import stlm.data.grammar as grammar

    h = hashlib.sha256()
    for f in sorted(Path(grammar.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]


def _file_identity(where: str, path: str) -> list:
    """Path, size and modification time of every file under `path` (a stream: its path alone)."""
    root = Path(path).expanduser().resolve()
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    return [where, str(root)] + [[f.relative_to(root).as_posix() if root.is_dir() else f.name,
                                  f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


def _hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _validate(cfg: DataConfig) -> None:
    if cfg.num_proc < 1 or cfg.shard_tokens < 1:
        raise UserError("data.num_proc and data.shard_tokens must be >= 1")
    if not 0 <= cfg.val_fraction < 1:
        raise UserError(f"data.val_fraction={cfg.val_fraction} must be in [0, 1)")
    if not cfg.name or "/" in cfg.name:
        raise UserError(f"data.name={cfg.name!r} must be a non-empty name without '/'")
    if cfg.path is not None and not any(src.path == cfg.path for src in cfg.sources):
        raise UserError(f"data.path={cfg.path} is only read by data=text (as its source's path); "
                        f"for data={cfg.name} set data.sources.N.path=... instead")
    for split in SPLITS:
        cap = cfg.max_train_tokens if split == "train" else cfg.max_val_tokens
        for stage in stages(cfg, split):
            for where, src in stage.sources:
                if is_endless(src) and stage.tokens is None and cap is None:
                    raise UserError(f"{where}: the grammar source never ends; set {where}.max_documents "
                                    f"or data.max_{split}_tokens")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: concurrent prepares are unguarded
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
