"""Data sources: local files, deterministic held-out validation, hub loaders on local copies, bad input."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stlm.config.schema import DataConfig, SourceConfig, TokenizerConfig
from stlm.data.prepare import prepare_data
from stlm.data.sources import read_source
from stlm.errors import UserError


def data_cfg(tmp_path, *sources: SourceConfig, **kw) -> DataConfig:
    kw.setdefault("val_fraction", 0.0)
    return DataConfig(name="t", sources=list(sources), tokenizer=TokenizerConfig(kind="byte"), num_proc=1,
                      cache_dir=str(tmp_path / "cache"), **kw)


def texts(src: SourceConfig, split: str, cfg: DataConfig) -> list[str]:
    return [t for t, _ in read_source(src, split, cfg, "data.sources.0")]


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_text_files_paragraphs_jsonl_gz_and_folder_order(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("first paragraph\nstill first\n\n\n  \nsecond one\n")
    with gzip.open(folder / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "from jsonl", "id": 1}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    (folder / "sub" / "c.txt").write_text("nested\r\n")
    (folder / "ignored.csv").write_text("x,y\n")
    src = SourceConfig(name="text", path=str(folder))
    assert texts(src, "train", data_cfg(tmp_path, src)) == [
        "from jsonl", "two", "first paragraph\nstill first", "second one", "nested"]
    assert texts(src, "val", data_cfg(tmp_path, src)) == []


def test_a_huge_paragraph_is_cut_at_line_ends(tmp_path, monkeypatch):
    import stlm.data.sources as sources

    monkeypatch.setattr(sources, "MAX_DOC_BYTES", 20)  # memory stays bounded by this, not the file
    (tmp_path / "long.txt").write_text("".join(f"line {i:02d} of it\n" for i in range(5)) + "\nshort\n")
    src = SourceConfig(name="text", path=str(tmp_path / "long.txt"))
    assert texts(src, "train", data_cfg(tmp_path, src)) == [
        "line 00 of it\nline 01 of it", "line 02 of it\nline 03 of it", "line 04 of it", "short"]


def test_held_out_split_is_deterministic_disjoint_and_copy_independent(tmp_path):
    rows = [{"text": f"document {i}"} for i in range(3000)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "copy").mkdir()
    write_jsonl(tmp_path / "copy" / "b.jsonl", rows)
    src = SourceConfig(name="text", path=str(tmp_path / "a.jsonl"))
    cfg = data_cfg(tmp_path, src, val_fraction=0.1)
    train, val = texts(src, "train", cfg), texts(src, "val", cfg)
    assert sorted(train + val) == sorted(r["text"] for r in rows) and not set(train) & set(val)
    assert 0.08 < len(val) / len(rows) < 0.12
    assert texts(src, "val", cfg) == val  # no random state
    copy = SourceConfig(name="text", path=str(tmp_path / "copy"))
    assert texts(copy, "val", cfg) == val  # decided by (source name, index), not by the file


def test_invalid_utf8_replace_counts_and_fail_names_file_offset_line(tmp_path):
    path = tmp_path / "bad.txt"
    raw = b"good text\n\nbad \xff\xfe here\n\ngenuine \xef\xbf\xbd char\n"
    path.write_bytes(raw)
    src = SourceConfig(name="text", path=str(path))
    docs = list(read_source(src, "train", data_cfg(tmp_path, src), "data.sources.0"))
    assert docs == [("good text", 0), ("bad \ufffd\ufffd here", 2), ("genuine \ufffd char", 0)]
    path.write_bytes(raw + b"".join(b"\nfiller %d\n" % i for i in range(20)))
    splits = prepare_data(data_cfg(tmp_path, src, val_fraction=0.3), progress=False).meta["splits"]
    assert splits["train"]["invalid_utf8_replacements"] + splits["val"]["invalid_utf8_replacements"] == 2

    with pytest.raises(UserError) as err:
        list(read_source(src, "train", data_cfg(tmp_path, src, invalid_utf8="fail"), "data.sources.0"))
    msg = str(err.value)
    offset = raw.index(b"\xff")
    assert str(path) in msg and f"byte offset {offset}" in msg and "(line 3)" in msg
    assert "data.invalid_utf8=replace" in msg


def test_missing_path_and_unknown_source_are_clear(tmp_path):
    missing = SourceConfig(name="text", path=str(tmp_path / "nope"))
    with pytest.raises(UserError, match=r"data\.sources\.0\.path=.*nope does not exist"):
        prepare_data(data_cfg(tmp_path, missing), progress=False)
    with pytest.raises(UserError, match=r"source 'text' needs a path"):
        prepare_data(data_cfg(tmp_path, SourceConfig(name="text")), progress=False)
    with pytest.raises(UserError, match=r"'wikipedia_xl' is not a known source; valid: grammar, text, tinystories"):
        prepare_data(data_cfg(tmp_path, SourceConfig(name="wikipedia_xl")), progress=False)


def test_empty_corpus_and_empty_validation_split(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("\n   \n\n")
    src = SourceConfig(name="text", path=str(tmp_path / "empty"))
    with pytest.raises(UserError, match=r"source 'text' at .*empty has no documents"):
        prepare_data(data_cfg(tmp_path, src), progress=False)
    (tmp_path / "tiny.txt").write_text("one\n\ntwo\n\nthree\n")
    tiny = SourceConfig(name="text", path=str(tmp_path / "tiny.txt"))
    with pytest.raises(UserError, match=r"val split of 't' is empty.*raise data\.val_fraction"):
        prepare_data(data_cfg(tmp_path, tiny, val_fraction=0.001), progress=False)


@pytest.fixture
def online(monkeypatch):
    """Hub access as for an online user: offline mode off, whatever the environment says."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return monkeypatch


def test_unreachable_hub_fails_within_seconds_naming_the_fix(tmp_path, online):
    try:  # the test machines reach package registries, not dataset hubs
        socket.create_connection(("huggingface.co", 443), timeout=1).close()
        pytest.skip("huggingface.co is reachable from here: this test needs it unreachable")
    except OSError:
        pass
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        prepare_data(data_cfg(tmp_path, SourceConfig(name="tinystories"), hub_timeout_s=2.0), progress=False)
    assert time.perf_counter() - start < 5.0
    msg = str(err.value)
    assert "cannot reach the Hugging Face hub" in msg and "roneneldan/TinyStories" in msg
    assert "data.sources.0.path=/path/to/copy" in msg and "HF_HUB_OFFLINE=1" in msg


def test_silent_hub_endpoint_times_out(tmp_path, online):
    """A proxy or endpoint that never answers (even name resolution hanging) still fails in time."""
    import stlm.data.sources as sources

    online.setenv("HF_ENDPOINT", "https://192.0.2.1")  # TEST-NET-1
    def hang(*args, **kwargs):
        time.sleep(30)
        raise OSError("never answered")

    online.setattr(sources.socket, "create_connection", hang)
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"192\.0\.2\.1:443: no answer in 1 s\) to stream "
                                        r"'HuggingFaceFW/fineweb-edu' \(sample-10BT\)"):
        prepare_data(data_cfg(tmp_path, SourceConfig(name="fineweb_edu"), hub_timeout_s=1.0), progress=False)
    assert time.perf_counter() - start < 3.0


def test_hub_loader_reads_a_local_copy_in_the_hub_format(tmp_path):
    """A TinyStories-layout parquet folder goes through datasets' own loader, with its own val split."""
    data = tmp_path / "TinyStories" / "data"
    data.mkdir(parents=True)
    train = [f"Once upon a time there was story {i}." for i in range(40)]
    val = [f"A validation story {i}." for i in range(5)]
    pq.write_table(pa.table({"text": train}), data / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": val}), data / "validation-00000-of-00001.parquet")
    src = SourceConfig(name="tinystories", path=str(tmp_path / "TinyStories"))
    cfg = data_cfg(tmp_path, src, val_fraction=0.5)
    assert texts(src, "train", cfg) == train and texts(src, "val", cfg) == val  # no holdout: own split
    prepared = prepare_data(cfg, progress=False)
    assert prepared.meta["splits"]["val"]["documents"] == 5
    assert prepared.meta["splits"]["val"]["bytes"] == sum(len(v.encode()) for v in val)

    jsonl = tmp_path / "TinyStories-train.jsonl"  # one file: a train split, validation held out
    write_jsonl(jsonl, [{"text": t} for t in train])
    one = SourceConfig(name="tinystories", path=str(jsonl))
    got_train, got_val = texts(one, "train", cfg), texts(one, "val", cfg)
    assert sorted(got_train + got_val) == sorted(train) and got_val and got_train


def test_formatted_hub_rows_and_a_missing_text_field(tmp_path):
    code = tmp_path / "code.parquet"
    pq.write_table(pa.table({"instruction": ["Add two numbers"], "output": ["def add(a, b):\n    return a + b"]}),
                   code)
    src = SourceConfig(name="python_code", path=str(code))
    assert texts(src, "train", data_cfg(tmp_path, src)) == [
        "Instruction: Add two numbers\nOutput: def add(a, b):\n    return a + b"]
    wiki = tmp_path / "wiki.parquet"
    pq.write_table(pa.table({"title": ["A"], "body": ["Text."]}), wiki)
    bad = SourceConfig(name="simple_wiki", path=str(wiki))
    with pytest.raises(UserError, match=r"no text field 'text' \(fields: title, body\); set data\.sources\.0\.text_field"):
        texts(bad, "train", data_cfg(tmp_path, bad))
    good = SourceConfig(name="simple_wiki", path=str(wiki), text_field="body")
    assert texts(good, "train", data_cfg(tmp_path, good)) == ["Text."]


def test_a_binary_file_renamed_txt_is_refused_naming_the_file(tmp_path):
    import zlib

    import numpy as np

    png = tmp_path / "photo.txt"  # a real PNG: signature, then zlib-compressed pixels
    pixels = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + zlib.compress(pixels))
    utf16 = tmp_path / "notes.txt"
    utf16.write_bytes("plain words in UTF-16\n".encode("utf-16") * 100)
    latin = tmp_path / "random.txt"  # no NUL, but mostly invalid UTF-8
    latin.write_bytes(bytes(np.random.default_rng(1).integers(128, 256, 5000, dtype=np.uint8)))
    for path, why in ((png, "NUL bytes"), (utf16, "NUL bytes"), (latin, "not UTF-8 text")):
        src = SourceConfig(name="text", path=str(path))
        with pytest.raises(UserError) as err:
            prepare_data(data_cfg(tmp_path, src), progress=False)
        assert str(path) in str(err.value) and why in str(err.value) and "\n" not in str(err.value)
    not_gzip = tmp_path / "plain.txt.gz"
    not_gzip.write_text("plain text, not compressed\n")
    with pytest.raises(UserError, match=r"cannot read .*plain\.txt\.gz as gzip"):
        texts(SourceConfig(name="text", path=str(not_gzip)), "train", data_cfg(tmp_path))
    fine = tmp_path / "fine.txt"  # a few Latin-1 bytes in real text stay text (replaced and counted)
    fine.write_bytes(b"caf\xe9 au lait\n\nna\xefve " + b"words " * 200)
    assert texts(SourceConfig(name="text", path=str(fine)), "train", data_cfg(tmp_path))[0] == "caf\ufffd au lait"


def test_an_unwritable_cache_is_refused_before_reading(tmp_path):
    (tmp_path / "blocker").write_text("a file where the cache folder's parent should be")
    (tmp_path / "corpus.txt").write_text("some text\n")
    src = SourceConfig(name="text", path=str(tmp_path / "corpus.txt"))
    cfg = data_cfg(tmp_path, src)
    cfg.cache_dir = str(tmp_path / "blocker" / "cache")
    with pytest.raises(UserError, match=r"cannot write prepared data to .*blocker/cache.*data\.cache_dir="):
        prepare_data(cfg, progress=False)
