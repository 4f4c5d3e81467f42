"""Prepare: shards and meta match the documents, caching, parallel = serial, kill-and-resume, dtypes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_shared
from stlm.cli import main
from stlm.config.schema import DataConfig, SourceConfig, TokenizerConfig
from stlm.data import encode
from stlm.data.prepare import prepare_data
from stlm.data.shards import ShardedTokens, ShardWriter, dtype_for
from stlm.data.sources import read_source

BYTE_EOT = 256


def paragraphs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "naïve", "café", "🙂", "über", "and", "ran", "far"]
    return [f"Paragraph {i}: " + " ".join(rng.choice(words, size=int(rng.integers(5, 80))))
            for i in range(n)]


def byte_cfg(path: Path, cache: Path, **kw) -> DataConfig:
    kw = {"val_fraction": 0.1, "num_proc": 1, **kw}
    return DataConfig(name="p", sources=[SourceConfig(name="text", path=str(path))],
                      tokenizer=TokenizerConfig(kind="byte"), cache_dir=str(cache), **kw)


def split_docs(ids: np.ndarray, eot: int) -> list[np.ndarray]:
    ends = np.flatnonzero(ids == eot)
    return np.split(ids, ends + 1)[:-1]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.bin"))}


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, list[str]]:
    docs = paragraphs(600)
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path, docs


def test_shards_and_meta_match_the_documents(tmp_path, corpus):
    path, docs = corpus
    cfg = byte_cfg(path, tmp_path / "cache", shard_tokens=5000)
    data = prepare_data(cfg, progress=False)
    for split in ("train", "val"):
        expected = [t for t, _ in read_source(cfg.sources[0], split, cfg, "data.sources.0")]
        ids = data.tokens(split)[:]
        assert [bytes(d[:-1].astype(np.uint8)).decode() for d in split_docs(ids, BYTE_EOT)] == expected
        info = data.meta["splits"][split]
        assert info["bytes"] == sum(len(t.encode()) for t in expected)  # + 0 for each end-of-text
        assert info["tokens"] == len(ids) == info["bytes"] + len(expected)
        assert info["documents"] == len(expected) and info["invalid_utf8_replacements"] == 0
        assert all(os.path.getsize(data.path / s) <= 2 * 5000 for s in info["shards"])
    assert len(data.meta["splits"]["train"]["shards"]) > 3 and data.meta["dtype"] == "uint16"
    assert data.meta["tokenizer"]["fingerprint"] == data.tokenizer.fingerprint()
    assert not list((tmp_path / "cache").glob(".*partial"))  # the work folder was renamed


def test_cached_result_is_reused_and_caps_cut_exactly(tmp_path, corpus):
    path, _ = corpus
    first = prepare_data(byte_cfg(path, tmp_path / "cache"), progress=False)
    stamp = (first.path / "train_00000.bin").stat().st_mtime_ns
    again = prepare_data(byte_cfg(path, tmp_path / "cache"), progress=False)
    assert again.path == first.path and (again.path / "train_00000.bin").stat().st_mtime_ns == stamp
    capped = prepare_data(byte_cfg(path, tmp_path / "cache", max_train_tokens=1234, max_val_tokens=99),
                          progress=False)
    assert capped.path != first.path
    assert len(capped.tokens("train")) == 1234 and len(capped.tokens("val")) == 99
    assert np.array_equal(capped.tokens("train")[:], first.tokens("train")[:1234])


@pytest.mark.shared_data
def test_wikitext2_with_a_trained_bpe(tmp_path):
    wikitext = require_shared("corpora/wikitext-2")
    cfg = DataConfig(name="wt2", sources=[SourceConfig(name="text", path=str(wikitext))],
                     tokenizer=TokenizerConfig(kind="bpe", vocab_size=512, train_chars=1_000_000),
                     num_proc=2, cache_dir=str(tmp_path / "cache"))
    data = prepare_data(cfg, progress=False)
    assert data.tokenizer.vocab_size == 512 and data.meta["dtype"] == "uint16"
    assert len(list((tmp_path / "cache").glob("tokenizer-bpe512-*"))) == 1  # cached beside the data
    val_docs = [t for t, _ in read_source(cfg.sources[0], "val", cfg, "data.sources.0")]
    ids = data.tokens("val")[:]
    decoded = [data.tokenizer.decode(d[:-1]) for d in split_docs(ids, data.tokenizer.eot_id)]
    assert decoded == val_docs
    assert data.meta["splits"]["val"]["bytes"] == sum(len(t.encode()) for t in val_docs)
    train = data.meta["splits"]["train"]
    assert train["bytes"] > 2_000_000 and 2.0 < train["bytes"] / train["tokens"] < 5.0


def test_parallel_output_is_byte_identical(tmp_path, corpus, monkeypatch):
    path, _ = corpus
    monkeypatch.setattr(encode, "CHUNK_CHARS", 3000)  # many chunks in flight across the workers
    serial = prepare_data(byte_cfg(path, tmp_path / "one", shard_tokens=7000, num_proc=1), progress=False)
    parallel = prepare_data(byte_cfg(path, tmp_path / "two", shard_tokens=7000, num_proc=2), progress=False)
    assert len(folder_bytes(serial.path)) > 5
    assert folder_bytes(parallel.path) == folder_bytes(serial.path)
    assert parallel.meta["splits"] == serial.meta["splits"]


def _feed(fifo: Path, data: bytes, deadline: float) -> None:
    """Write `data` into the named pipe once a reader has it open (without blocking forever)."""
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails until a reader opens it
            break
        except OSError:
            assert time.monotonic() < deadline, "nobody read the pipe"
            time.sleep(0.01)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


def _progress(cache: Path) -> dict:
    found = list(cache.glob(".p-*.partial/progress.json"))
    return json.loads(found[0].read_text())["splits"] if found else {}


def test_killed_prepare_resumes_to_identical_shards(tmp_path):
    """SIGKILL a prepare after complete shards were written, rerun: the same bytes as a clean prepare.

    The corpus comes through a named pipe, so the first run deterministically stalls (waiting for
    more text) after writing some shards, and is killed there; the pipe is fed again for each pass
    of the rerun (the train split, then the validation split).
    """
    text = ("\n\n".join(paragraphs(8000, seed=1)) + "\n").encode()
    assert len(text) > 1_500_000
    fifo = tmp_path / "stream" / "corpus.txt"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    cache, kw = tmp_path / "cache", {"shard_tokens": 65536, "val_fraction": 0.05}
    script = (f"from stlm.config.schema import *\nfrom stlm.data.prepare import prepare_data\n"
              f"prepare_data(DataConfig(name='p', sources=[SourceConfig(name='text', path={str(fifo)!r})], "
              f"tokenizer=TokenizerConfig(kind='byte'), num_proc=1, cache_dir={str(cache)!r}, "
              f"shard_tokens=65536, val_fraction=0.05), progress=False)\n")
    deadline = time.monotonic() + 60
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        # > 1 MiB: one whole chunk gets tokenized and written; the rest of the text never comes
        _feed(fifo, text[:1_300_000], deadline)
        while _progress(cache).get("train", {}).get("shards", 0) < 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not [p for p in cache.iterdir() if p.name.startswith("p-")]  # nothing that looks complete
    saved = _progress(cache)["train"]
    assert saved["shards"] >= 1 and not saved["done"]
    work = next(cache.glob(".p-*.partial"))
    kept = {p.name: p.stat().st_mtime_ns for p in work.glob("train_*.bin")}
    assert len(kept) == saved["shards"]

    def feed_both_passes() -> None:
        _feed(fifo, text, deadline)
        while not _progress(cache).get("train", {}).get("done"):  # the train pass closed the pipe
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _feed(fifo, text, deadline)

    feeder = threading.Thread(target=feed_both_passes, daemon=True)
    feeder.start()
    resumed = prepare_data(byte_cfg(fifo, cache, **kw), progress=False)
    feeder.join()
    assert {n: (resumed.path / n).stat().st_mtime_ns for n in kept} == kept  # continued, not redone

    copy = tmp_path / "corpus.txt"
    copy.write_bytes(text)
    clean = prepare_data(byte_cfg(copy, tmp_path / "clean", **kw), progress=False)
    assert len(folder_bytes(clean.path)) > len(kept)
    assert folder_bytes(resumed.path) == folder_bytes(clean.path)
    assert resumed.meta["splits"] == clean.meta["splits"]


def test_dtype_selection_and_sharded_reads(tmp_path):
    assert dtype_for(257) == np.uint16 and dtype_for(50257) == np.uint16 and dtype_for(65536) == np.uint16
    assert dtype_for(65537) == np.uint32 and dtype_for(200_000) == np.uint32
    ids = np.arange(70_000, 70_000 + 2500, dtype=np.uint32)  # values that need 32 bits
    writer = ShardWriter(tmp_path, "train", np.dtype(np.uint32), 1000, 0)
    for piece in np.split(ids, [300, 1700, 2200]):
        while len(piece):
            n = min(len(piece), writer.room())
            writer.append(piece[:n])
            piece = piece[n:]
            if writer.room() == 0:
                writer.close_shard()
    writer.close_shard()
    files = sorted(tmp_path.glob("train_*.bin"))
    assert [f.stat().st_size for f in files] == [4000, 4000, 2000]
    tokens = ShardedTokens(files, "uint32")
    assert len(tokens) == 2500 and np.array_equal(tokens[:], ids)
    assert np.array_equal(tokens[990:2010], ids[990:2010]) and tokens[-1] == ids[-1]


def test_prepare_command_prints_a_summary(tmp_path, corpus, capsys):
    path, _ = corpus
    code = main(["prepare", "data=text", f"data.sources.0.path={path}", "data.tokenizer.kind=byte",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.num_proc=1", "data.val_fraction=0.1"])
    out = capsys.readouterr().out
    assert code == 0 and "data text:" in out and "tokenizer byte (257 ids" in out
    train_line = next(line for line in out.splitlines() if line.strip().startswith("train"))
    assert int(train_line.split()[1].replace(",", "")) > 10_000
    assert main(["prepare", "data=text", f"data.cache_dir={tmp_path / 'cache'}"]) == 2
    assert "source 'text' needs a path: data.path=" in capsys.readouterr().err
    # the short form names the same corpus: the cache prepared by the long form is reused
    assert main(["prepare", "data=text", f"data.path={path}", "data.tokenizer.kind=byte",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.num_proc=1", "data.val_fraction=0.1"]) == 0
    assert "data text:" in capsys.readouterr().out and len(list((tmp_path / "cache").glob("text-*"))) == 1
    assert main(["prepare", "data=grammar", f"data.path={path}", f"data.cache_dir={tmp_path / 'cache'}"]) == 2
    assert "data.path=" in capsys.readouterr().err


def test_editing_the_grammar_code_invalidates_its_cache(tmp_path, monkeypatch):
    """Shards of the built-in corpus are keyed by the generator's code, not only by its config."""
    import stlm.data.prepare as prepare

    cfg = DataConfig(name="grammar", sources=[SourceConfig(name="grammar", max_documents=200)],
                     tokenizer=TokenizerConfig(kind="byte"), val_fraction=0.1, cache_dir=str(tmp_path),
                     num_proc=1)
    first = prepare_data(cfg, progress=False).path
    assert prepare_data(cfg, progress=False).path == first  # unchanged code: cache reused
    monkeypatch.setattr(prepare, "grammar_code_hash", lambda: "edited")
    assert prepare_data(cfg, progress=False).path != first
