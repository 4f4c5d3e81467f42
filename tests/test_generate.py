"""Generation: the KV-cache path matches full recomputation, sampling is seeded, text streams as
complete UTF-8 and stops at end-of-text."""

from types import SimpleNamespace

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.generate import generate, generate_ids, sample_next
from stlm.models import KVCache, build_model
from stlm.models.output import ModelOutput
from stlm.tokenizers import ByteTokenizer


def tiny_model(positions="rope", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=64, positions=positions,
                      init_std=0.2)  # a large init so random logits are far from uniform
    return build_model(cfg, 257).eval()


def test_cached_greedy_equals_full_recomputation():
    for positions in ("rope", "learned"):
        model = tiny_model(positions)
        prompt = list(b"To be, or not to be")
        cached = generate_ids(model, prompt, 40, temperature=0)
        full = generate_ids(model, prompt, 40, temperature=0, use_cache=False)
        assert len(cached) == 40 and cached == full


def test_sampling_is_deterministic_for_a_seed():
    model, tok = tiny_model(), ByteTokenizer()
    a = generate(model, tok, "Hello", 30, temperature=1.0, top_k=20, seed=7)
    b = generate(model, tok, "Hello", 30, temperature=1.0, top_k=20, seed=7)
    c = generate(model, tok, "Hello", 30, temperature=1.0, top_k=20, seed=8)
    assert a == b and a != c


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.tensor([5.0, 4.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(200)} == {0, 1}
    assert {sample_next(logits, 1.0, top_p=0.5, generator=g) for _ in range(50)} == {0}
    assert sample_next(logits, 0.0) == 0


def test_window_overflow_keeps_generating():
    model = tiny_model("learned")  # absolute positions would fail past the context
    out = generate_ids(model, [1, 2, 3], 150, temperature=1.0, seed=0)
    assert len(out) == 150


class Scripted(nn.Module):
    """Emits a fixed list of ids after the prompt, through the same cache protocol as our models."""

    def __init__(self, script, prompt_len, vocab=257):
        super().__init__()
        self.cfg = SimpleNamespace(context_length=64)
        self.script, self.prompt_len, self.vocab = script, prompt_len, vocab
        self.weight = nn.Parameter(torch.zeros(()))

    def new_cache(self):
        return KVCache(1)

    def forward(self, ids, cache=None, logits="all"):
        start = cache.length if cache is not None else 0
        if cache is not None:
            cache.advance(ids.shape[1])
        out = torch.zeros(1, ids.shape[1] if logits == "all" else 1, self.vocab)
        out[0, -1, self.script[start + ids.shape[1] - self.prompt_len]] = 1.0
        return ModelOutput(logits=out)


def test_streams_complete_utf8_and_stops_at_eot():
    tok = ByteTokenizer()
    script = list("é€!".encode()) + [tok.eot_id, ord("x")]
    pieces = []
    text = generate(Scripted(script, prompt_len=1 + 2), tok, "Hi", 20, temperature=0, stream=pieces.append)
    assert text == "é€!"
    assert pieces == ["é", "€", "!"]  # a multi-byte character appears once it is complete
