"""Bits per byte: specials and padding add no bytes; byte-level and BPE tokenizations of one text
share one denominator, so their bpb are comparable."""

import math

import pytest
import torch
from torch import nn

from conftest import require_shared
from stlm.batch import Batch
from stlm.eval.bpb import bits_per_byte
from stlm.tokenizers import ByteTokenizer, GPT2Tokenizer

TEXT = "It was the best of times, it was the worst of times — naïve café, 東京.\n"


class Uniform(nn.Module):
    """A model that gives every id the same probability."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def scores(self, ids):
        return torch.zeros(*ids.shape, self.vocab) + self.dummy

    def logprobs(self, ids, targets):  # the model contract's scoring call
        logp = torch.log_softmax(self.scores(ids), -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        return logp, torch.zeros_like(targets, dtype=torch.bool)


def _batch(ids, loss_mask=None):
    t = torch.tensor([ids])
    return Batch(t, t, loss_mask)  # targets are all that bpb reads besides the model's scores


def test_uniform_byte_model_scores_log2_257():
    tok = ByteTokenizer()
    r = bits_per_byte(Uniform(tok.vocab_size), [_batch(tok.encode(TEXT))], tok.byte_lengths())
    assert r["bytes"] == len(TEXT.encode()) == r["tokens"]
    assert r["bpb"] == pytest.approx(math.log2(257))
    assert r["loss"] == pytest.approx(math.log(257))


def test_eot_and_padding_add_no_bytes():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    base = bits_per_byte(Uniform(257), [_batch(ids)], tok.byte_lengths())
    with_eot = bits_per_byte(Uniform(257), [_batch(ids + [tok.eot_id] * 5)], tok.byte_lengths())
    assert with_eot["bytes"] == base["bytes"]  # eot is 0 bytes
    assert with_eot["tokens"] == base["tokens"] + 5  # but its prediction cost counts
    padded_targets = torch.tensor([ids + [-100] * 7])
    padded = bits_per_byte(Uniform(257), [Batch(padded_targets.clamp(min=0), padded_targets)], tok.byte_lengths())
    assert (padded["bytes"], padded["tokens"]) == (base["bytes"], base["tokens"])
    assert padded["bpb"] == pytest.approx(base["bpb"])
    mask = torch.tensor([[True] * len(ids) + [False] * 7])  # a loss mask excludes the same way
    masked = bits_per_byte(Uniform(257), [_batch(ids + [65] * 7, mask)], tok.byte_lengths())
    assert (masked["bytes"], masked["tokens"]) == (base["bytes"], base["tokens"])


@pytest.mark.shared_data
def test_byte_and_bpe_tokenizations_share_the_byte_count():
    gpt2 = GPT2Tokenizer(require_shared("gpt2-bpe/r50k_base.tiktoken"))
    byte = ByteTokenizer()
    text_ids = {"byte": byte.encode(TEXT) + [byte.eot_id], "gpt2": gpt2.encode(TEXT) + [gpt2.eot_id]}
    r_byte = bits_per_byte(Uniform(byte.vocab_size), [_batch(text_ids["byte"])], byte.byte_lengths())
    r_bpe = bits_per_byte(Uniform(gpt2.vocab_size), [_batch(text_ids["gpt2"])], gpt2.byte_lengths())
    assert r_byte["bytes"] == r_bpe["bytes"] == len(TEXT.encode())
    assert r_bpe["tokens"] < r_byte["tokens"]
    # a uniform model pays log2(V) bits per token; per byte that is tokens/bytes of it
    assert r_bpe["bpb"] == pytest.approx(math.log2(gpt2.vocab_size) * r_bpe["tokens"] / r_bpe["bytes"])
    assert r_byte["bpb"] == pytest.approx(math.log2(257) * r_byte["tokens"] / r_byte["bytes"])


def test_a_better_model_has_lower_bpb():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)

    class Knows(Uniform):  # puts extra mass on the true next byte
        def scores(self, x):
            logits = super().scores(x)
            return logits.scatter(-1, torch.tensor([ids]).unsqueeze(-1), 5.0)

    good = bits_per_byte(Knows(257), [_batch(ids)], tok.byte_lengths())
    assert good["bpb"] == pytest.approx(-math.log2(math.exp(5) / (math.exp(5) + 256)))
    assert good["bpb"] < math.log2(257)
