"""Tokenizers: exact round trips, byte counts, GPT-2 reference ids, persistence, clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import require_shared
from stlm.config.schema import TokenizerConfig
from stlm.errors import UserError
from stlm.tokenizers import (BYTE_VOCAB_SIZE, GPT2_VOCAB_SIZE, BPETokenizer, ByteTokenizer, GPT2Tokenizer,
                             build_tokenizer, load_tokenizer, vocab_size_for)
from stlm.tokenizers import gpt2 as gpt2_module
from stlm.data.grammar import generate_stories
from stlm.tokenizers.base import EOT_TEXT, META_FILE
from stlm.tokenizers.bpe import bytes_to_unicode
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

BPE_VOCAB = 1024
HARD_TEXTS = ["", "hello world", "  \n\n\t\t  x  \r\n", "naïve café 🙂🚀👩‍👩‍👧", "世界 こんにちは 안녕",
              "e\u0301 a\u0300\u0316", "x" * 300, "don't we'll I'VE", "a<|endoftext|>b", EOT_TEXT,
              "\x00\x01\x7f", " 123 4567890 "]

TRICKY_CHARS = " \n\r\t\u00a0\u3000a1'sé\u0301🙂👩\u200d世<|>"  # whitespace runs, combining, emoji, CJK


@pytest.fixture(scope="module")
def corpus() -> str:
    """~400 KB of the built-in grammar corpus: 1,000 stories."""
    return "\n".join(generate_stories(0, 1000))


@pytest.fixture(scope="module")
def byte() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture(scope="module")
def bpe(corpus) -> BPETokenizer:
    """Trained once per module on 200 KB of the corpus, streamed in 1,000-line pieces."""
    lines = corpus.splitlines(keepends=True)
    texts = ("".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000))
    return BPETokenizer.train(texts, BPE_VOCAB, max_chars=200_000)


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    """The official GPT-2 vocabulary file: local data (no downloads in tests)."""
    return GPT2Tokenizer.find(require_shared("gpt2-bpe"))


@pytest.fixture
def all_tokenizers(request):
    """{kind: tokenizer}, built on first use, so byte and bpe tests need no local data."""
    class Lazy(dict):
        def __missing__(self, kind):
            return request.getfixturevalue(kind)
    return Lazy()


KINDS = ["byte", "bpe", pytest.param("gpt2", marks=pytest.mark.shared_data)]


def _examples(f):
    for t in HARD_TEXTS:
        f = example(text=t)(f)
    return f


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_any_text(all_tokenizers, kind):
    tok = all_tokenizers[kind]
    lengths = tok.byte_lengths()

    @settings(max_examples=300, deadline=None)
    @_examples
    @given(text=st.text() | st.text(alphabet=TRICKY_CHARS))
    def check(text):
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.eot_id not in ids
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode()
        assert int(lengths[ids].sum()) == len(text.encode())

    check()


@pytest.mark.parametrize("kind", KINDS)
def test_batch_matches_single_and_eot_text_is_ordinary(all_tokenizers, kind):
    tok = all_tokenizers[kind]
    assert tok.encode_batch(HARD_TEXTS) == [tok.encode(t) for t in HARD_TEXTS]
    ids = tok.encode(f"end{EOT_TEXT}start")
    assert tok.eot_id not in ids and len(ids) > 3
    assert tok.decode(ids) == f"end{EOT_TEXT}start"
    assert tok.token_bytes(tok.eot_id) == b"" and tok.byte_lengths()[tok.eot_id] == 0
    assert tok.decode([tok.eot_id, *tok.encode("hi"), tok.eot_id]) == "hi"


@pytest.mark.parametrize("kind", KINDS)
def test_every_byte_is_one_token(all_tokenizers, kind):
    tok = all_tokenizers[kind]
    table = tok.token_table()
    assert len(table) == tok.vocab_size
    singles = {b for b in table if len(b) == 1}
    assert singles == {bytes([b]) for b in range(256)}
    assert sum(1 for b in table if b == b"") == 1  # only end-of-text is empty


def test_byte_tokenizer_ids_are_bytes():
    tok = ByteTokenizer()
    assert tok.encode("aé") == [97, 0xC3, 0xA9]
    assert (tok.vocab_size, tok.eot_id) == (BYTE_VOCAB_SIZE, 256) == (257, 256)
    with pytest.raises(ValueError):
        tok.token_bytes(257)


@pytest.mark.shared_data
def test_gpt2_reference_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert (gpt2.vocab_size, gpt2.eot_id) == (GPT2_VOCAB_SIZE, 50256) == (50257, 50256)
    assert gpt2.token_bytes(15496) == b"Hello" and gpt2.token_bytes(995) == b" world"


@pytest.mark.shared_data
def test_gpt2_matches_independent_hf_implementation(gpt2, corpus):
    """Same ids as Hugging Face `tokenizers` BPE built from the original encoder.json + vocab.bpe."""
    folder = require_shared("gpt2-bpe")
    hf = HFTokenizer(models.BPE.from_file(str(folder / "encoder.json"), str(folder / "vocab.bpe")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    text = corpus[:20_000] + " ".join(t for t in HARD_TEXTS if EOT_TEXT not in t)
    assert gpt2.encode(text) == hf.encode(text).ids


def test_bpe_vocab_reaches_requested_size(bpe):
    assert bpe.vocab_size == BPE_VOCAB
    assert bpe.eot_id == 0  # the only special, added first: stable across trainings
    sentence = "The lazy bears sang. Grace baked the cake."
    assert len(bpe.encode(sentence)) < len(sentence) // 2  # merges learned


def test_bpe_alphabet_is_bytelevel():
    assert set(bytes_to_unicode().values()) == set(pre_tokenizers.ByteLevel.alphabet())


def test_bpe_small_corpus_reports_actual_vocab():
    tok = BPETokenizer.train(["ab ab ab"], 5000)
    assert 257 < tok.vocab_size < 5000
    assert tok.decode(tok.encode("ab ab 🙂")) == "ab ab 🙂"


def test_bpe_training_stops_after_max_chars():
    pulled = []

    def texts():
        for i in range(10_000):
            pulled.append(i)
            yield "abcde " * 10
    tok = BPETokenizer.train(texts(), 300, max_chars=150)
    assert len(pulled) == 3  # 60 + 60 + 30 characters
    assert tok.vocab_size <= 300


def test_bpe_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="at least 257"):
        BPETokenizer.train(["abc"], 100)
    with pytest.raises(UserError, match="no text"):
        BPETokenizer.train([], 300)
    with pytest.raises(UserError, match="does not exist"):
        BPETokenizer.from_file(tmp_path / "nope.json")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        BPETokenizer.from_file(tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(all_tokenizers, kind, tmp_path):
    tok = all_tokenizers[kind]
    tok.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / META_FILE).read_text())
    assert meta == {"kind": kind, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
                    "fingerprint": tok.fingerprint()}
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []
    loaded = load_tokenizer(tmp_path / "run")
    assert type(loaded) is type(tok)
    assert loaded.fingerprint() == tok.fingerprint()
    assert loaded.encode_batch(HARD_TEXTS) == tok.encode_batch(HARD_TEXTS)


@pytest.mark.shared_data
def test_fingerprints_differ(byte, bpe, gpt2, corpus):
    prints = {"byte": byte.fingerprint(), "bpe": bpe.fingerprint(), "gpt2": gpt2.fingerprint()}
    assert len(set(prints.values())) == 3
    assert GPT2Tokenizer(gpt2.path).fingerprint() == prints["gpt2"]
    other = BPETokenizer.train([corpus[200_000:400_000]], BPE_VOCAB)
    assert other.fingerprint() != prints["bpe"]


def test_load_tokenizer_errors(bpe, tmp_path):
    with pytest.raises(UserError, match="holds no saved tokenizer"):
        load_tokenizer(tmp_path / "missing")
    bpe.save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "fingerprint": "0" * 16}))
    with pytest.raises(UserError, match="does not match"):
        load_tokenizer(tmp_path)
    (tmp_path / META_FILE).write_text("{")
    with pytest.raises(UserError, match="corrupt"):
        load_tokenizer(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "kind": "wordpiece"}))
    with pytest.raises(UserError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path)


@pytest.fixture
def no_gpt2_anywhere(monkeypatch, tmp_path):
    """No env file, an empty tiktoken cache, and a download that fails (tests stay offline)."""
    monkeypatch.delenv("STLM_GPT2_BPE", raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))

    def fail(target):
        raise OSError("network unreachable")
    monkeypatch.setattr(gpt2_module, "_download", fail)
    return tmp_path


def test_gpt2_missing_file_error_names_the_fix(no_gpt2_anywhere):
    with pytest.raises(UserError) as err:
        GPT2Tokenizer.find(no_gpt2_anywhere / "nowhere")
    msg = str(err.value)
    assert "data.tokenizer.path=DIR" in msg and "STLM_GPT2_BPE" in msg
    assert str(no_gpt2_anywhere / "nowhere") in msg and "network unreachable" in msg


@pytest.mark.shared_data
def test_gpt2_search_order(no_gpt2_anywhere, monkeypatch):
    official = require_shared("gpt2-bpe/r50k_base.tiktoken")
    cache = no_gpt2_anywhere / "cache"
    cache.mkdir()
    cached = cache / hashlib.sha1(gpt2_module.R50K_URL.encode()).hexdigest()
    shutil.copy(official, cached)
    assert GPT2Tokenizer.find(None).path == cached
    monkeypatch.setenv("STLM_GPT2_BPE", str(official))
    assert GPT2Tokenizer.find(None).path == official
    assert GPT2Tokenizer.find(official.parent).path == official


@pytest.mark.shared_data
def test_gpt2_hash_mismatch(tmp_path):
    bad = tmp_path / "r50k_base.tiktoken"
    data = require_shared("gpt2-bpe/r50k_base.tiktoken").read_bytes()
    bad.write_bytes(data.replace(b" 995\n", b" 996\n", 1))
    with pytest.raises(UserError, match="sha256"):
        GPT2Tokenizer.find(tmp_path)


@pytest.mark.shared_data
def test_build_gpt2_tokenizer_from_a_path():
    gpt2_cfg = TokenizerConfig(kind="gpt2", path=str(require_shared("gpt2-bpe")))
    assert build_tokenizer(gpt2_cfg).encode("Hello world") == [15496, 995]
    assert vocab_size_for(gpt2_cfg) == GPT2_VOCAB_SIZE


def test_build_tokenizer_and_vocab_size_for(bpe, tmp_path):
    assert isinstance(build_tokenizer(TokenizerConfig(kind="byte")), ByteTokenizer)
    assert vocab_size_for(TokenizerConfig(kind="byte")) == 257

    trained = build_tokenizer(TokenizerConfig(kind="bpe", vocab_size=300, train_chars=5000),
                              texts=lambda: iter(["the cat sat on the mat. " * 400]))
    assert trained.vocab_size <= 300 and trained.decode(trained.encode("the mat")) == "the mat"
    bpe.save(tmp_path)
    cfg = TokenizerConfig(kind="bpe", vocab_size=999, path=str(tmp_path / "tokenizer.json"))
    assert build_tokenizer(cfg).fingerprint() == bpe.fingerprint()
    assert vocab_size_for(cfg) == BPE_VOCAB
    with pytest.raises(UserError, match="needs training text"):
        build_tokenizer(TokenizerConfig(kind="bpe"))
    with pytest.raises(UserError, match="unknown"):
        build_tokenizer(TokenizerConfig(kind="sentencepiece"))


def test_bpe_trainer_sees_bounded_pieces_cut_at_spaces():
    """Training time grows with the square of the longest pre-tokenized word, so a document without
    spaces (a binary file read as text, base64) is cut into pieces; ordinary text is cut before a
    space, so words keep their leading space as the byte-level pre-tokenizer splits them."""
    from stlm.tokenizers.bpe import MAX_TRAIN_PIECE_CHARS, _take_chars

    prose = "the cat sat on the mat " * 1000
    blob = "x" * (3 * MAX_TRAIN_PIECE_CHARS + 5)
    pieces = list(_take_chars([prose, blob], None, [0]))
    assert max(map(len, pieces)) <= MAX_TRAIN_PIECE_CHARS and "".join(pieces) == prose + blob
    prose_pieces = pieces[: -4]
    assert len(prose_pieces) == 6 and all(p.startswith(" ") for p in prose_pieces[1:])
