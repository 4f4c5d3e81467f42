"""Byte-level chunking: chunks are token bytes taken by offset, concatenating to the input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared
from stlm.data.chunks import EOT_SYMBOL, Utf8, chunk_table
from stlm.errors import UserError
from stlm.tokenizers import ByteTokenizer, GPT2Tokenizer
from stlm.tokenizers.chunked import ChunkedTokenizer

MIXED = "naïve café 日本語 “quotes” 🙂 " + "-" * 40 + " \U0001F469\u200D\U0001F4BB"
TEXTS = st.lists(st.sampled_from(list("ab éï日本🙂🎉—“”\n-") + ["    ", "\U0001F469\u200D", "-" * 9])
                 | st.characters(), max_size=40).map("".join)


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer(require_shared("gpt2-bpe/r50k_base.tiktoken"))


@pytest.fixture(scope="module")
def chunked(gpt2):
    return ChunkedTokenizer(gpt2, 4)


@pytest.fixture(scope="module")
def table(chunked):
    return chunk_table(chunked, 4)


@pytest.mark.shared_data
@settings(max_examples=60, deadline=None)
@given(text=TEXTS)
def test_chunks_concatenate_to_the_input_bytes(chunked, table, text):
    ids = chunked.encode(text)
    chunks = [chunked.token_bytes(i) for i in ids]
    assert b"".join(chunks) == text.encode()
    assert all(1 <= len(c) <= 4 for c in chunks)
    symbols, lengths = table
    assert b"".join(bytes(symbols[i, : lengths[i]].tolist()) for i in ids) == text.encode()


@pytest.mark.shared_data
def test_long_tokens_become_several_chunks_never_truncated(gpt2, chunked):
    long_ids = [i for i in gpt2.encode(MIXED) if len(gpt2.token_bytes(i)) > 4]
    assert long_ids, "the text must hold tokens longer than the limit"
    ids = chunked.encode(MIXED)
    assert len(ids) > len(gpt2.encode(MIXED)) and not set(ids) & set(long_ids)
    assert chunked.decode_bytes(ids) == MIXED.encode()
    # tokens within the limit keep their GPT-2 ids; the pieces reuse GPT-2 ids where they exist
    assert set(gpt2.encode("the cat")) == set(chunked.encode("the cat"))
    assert chunked.vocab_size > gpt2.vocab_size


@pytest.mark.shared_data
def test_end_of_text_is_one_reserved_symbol(chunked, table):
    symbols, lengths = table
    assert lengths[chunked.eot_id] == 1 and symbols[chunked.eot_id, 0] == EOT_SYMBOL
    assert chunked.byte_lengths()[chunked.eot_id] == 0  # and adds no bytes to bpb
    assert all(lengths[i] == 0 for i in chunked.unused_ids())


@pytest.mark.shared_data
def test_a_table_narrower_than_the_tokens_is_refused(gpt2):
    with pytest.raises(UserError, match="max_chunk_bytes=16"):
        chunk_table(gpt2, 16)


def test_utf8_automaton_accepts_exactly_valid_utf8():
    import torch
    for data, valid in [(MIXED.encode(), True), (b"\xc3", False), (b"\xed\xa0\x80", False),
                        (b"\xe0\x80\x80", False), (b"\xf4\x90\x80\x80", False), (b"\x80", False)]:
        t = torch.tensor([list(data)])
        state = int(Utf8.run(t, torch.tensor([len(data)]), 0)[0])
        assert (state == 0) == valid, data
    assert Utf8.state_after("日本".encode()[:-1]) not in (0, Utf8.ERROR)
    assert Utf8.state_after("日本".encode()) == 0
    assert ByteTokenizer().encode("é") == list("é".encode())
