"""The byte-level model (byte-pooled embedder + byte decoder head): pad invariance, causality
inside the decoder, exact bits per byte, valid UTF-8 generation, parameter accounting."""

import dataclasses
import math

import pytest
import torch

from conftest import require_shared
from stlm.batch import Batch
from stlm.config import compose_config
from stlm.data.chunks import EOC
from stlm.eval.bpb import bits_per_byte
from stlm.eval.scoring import score_continuations
from stlm.generate import generate
from stlm.models import build_model
from stlm.models.params import count_parameters
from stlm.tokenizers import GPT2Tokenizer
from stlm.tokenizers.chunked import ChunkedTokenizer

TEXT = "naïve café 日本語 “quotes” 🙂 — the cat sat.\n"


@pytest.fixture(scope="module")
def tok():
    return ChunkedTokenizer(GPT2Tokenizer(require_shared("gpt2-bpe/r50k_base.tiktoken")), 8)


def small(preset="byte_pooled", **kw):
    cfg = compose_config([f"model={preset}"]).model
    return dataclasses.replace(cfg, **{**dict(d_model=32, n_layers=2, n_heads=4, d_ff=64, byte_dim=32, byte_heads=2,
                                              byte_chunk_max=8, context_length=32), **kw})


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return build_model(small(), tok).eval()


@pytest.mark.shared_data
def test_padding_changes_neither_loss_nor_scores(model, tok, one_thread):
    short = tok.encode("a b c d e f g h")  # 1-2 byte chunks
    long = tok.encode(" international communications")  # 8-byte chunks: wider padding
    n = len(short)
    alone = torch.tensor([short])
    both = torch.tensor([short, (long * n)[:n]])
    with torch.no_grad():
        assert int(model.embedder.chunks(both)[1].max()) > int(model.embedder.chunks(alone)[1].max())
        torch.testing.assert_close(model.encode(both)[:1], model.encode(alone), rtol=0, atol=1e-5)
        targets = torch.roll(both, -1, 1)
        torch.testing.assert_close(model.logprobs(both, targets)[0][:1],
                                   model.logprobs(alone, targets[:1])[0], rtol=0, atol=1e-5)
        # directly: one chunk padded to its own length or to an 8-byte neighbour's
        a, wide = torch.tensor([short[1]]), torch.tensor([short[1], long[1]])
        torch.testing.assert_close(model.embedder.pool_chunks(wide)[:1], model.embedder.pool_chunks(a),
                                   rtol=0, atol=1e-5)
        h = torch.randn(2, 32)
        torch.testing.assert_close(model.head._chunk_nll(h, wide)[0][:1], model.head._chunk_nll(h[:1], a)[0],
                                   rtol=0, atol=1e-5)
        mask = torch.tensor([[True] * n, [False] * n])
        torch.testing.assert_close(model(both, targets, loss_mask=mask).loss,
                                   model(alone, targets[:1]).loss, rtol=0, atol=1e-5)


@pytest.mark.shared_data
def test_a_later_byte_never_changes_an_earlier_byte_prediction(model, tok, one_thread):
    h = torch.randn(3, 32)
    prefix = torch.tensor([list(b"abcdefg")] * 3)
    with torch.no_grad():
        base = model.head.symbol_logits(h, prefix)
        for j in (0, 3, 6):
            changed = prefix.clone()
            changed[:, j] = ord("z")
            out = model.head.symbol_logits(h, changed)
            torch.testing.assert_close(out[:, : j + 1], base[:, : j + 1], rtol=0, atol=1e-6)
            assert not torch.allclose(out[:, j + 1], base[:, j + 1])
        # and the core: a later token changes no earlier chunk's probability
        ids = torch.tensor([tok.encode(TEXT)[:12]])
        logp = model.logprobs(ids, torch.roll(ids, -1, 1))[0]
        later = ids.clone()
        later[0, 8] = tok.encode(" dog")[0]
        torch.testing.assert_close(model.logprobs(later, torch.roll(ids, -1, 1))[0][:, :8], logp[:, :8],
                                   rtol=0, atol=1e-6)


@pytest.mark.shared_data
def test_chunk_probability_is_its_symbols_and_end_of_chunk(model, tok, one_thread):
    ids = tok.encode(" café")
    target = ids[0]
    chunk = tok.token_bytes(target)
    h = torch.randn(1, 32)
    with torch.no_grad():
        logits = model.head.symbol_logits(h, torch.tensor([list(chunk)])).log_softmax(-1)[0]
        by_hand = sum(logits[j, b] for j, b in enumerate(chunk)) + logits[len(chunk), EOC]
        logp, _ = model.target_logprobs(h, torch.tensor([target]))
    torch.testing.assert_close(logp[0], by_hand)


@pytest.mark.shared_data
def test_training_loss_and_bits_per_byte_agree(model, tok, one_thread):
    ids = tok.encode(TEXT + TEXT)[:33]
    batch = Batch(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    with torch.no_grad():
        loss = model(batch.ids, batch.targets).lm_loss
    r = bits_per_byte(model, [batch], tok.byte_lengths())
    n_bytes = sum(len(tok.token_bytes(i)) for i in ids[1:])
    assert r["bytes"] == n_bytes and r["tokens"] == 32
    assert r["bpb"] == pytest.approx(float(loss) * 32 / math.log(2) / n_bytes, rel=1e-5)
    # multiple-choice scoring goes through the same call: the sum of chunk log-probabilities
    ctx, cont = ids[:10], ids[10:14]
    score = score_continuations(model, [(ctx, cont)])[0]
    with torch.no_grad():
        full = model.logprobs(torch.tensor([ids[:13]]), torch.tensor([ids[1:14]]))[0][0, 9:13].sum()
    assert score.logprob == pytest.approx(float(full), abs=1e-4)


@pytest.mark.shared_data
def test_generation_is_valid_utf8_from_the_tokenizers_chunks(model, tok, one_thread):
    for seed in range(3):
        text = generate(model, tok, "日本", max_new_tokens=12, temperature=1.5, seed=seed)
        assert "\ufffd" not in text  # an invalid byte would have decoded to U+FFFD
        text.encode("utf-8")
    greedy = generate(model, tok, "the", max_new_tokens=6, temperature=0)
    assert greedy == generate(model, tok, "the", max_new_tokens=6, temperature=0, use_cache=False)


def test_byte_embedder_and_decoder_are_a_fraction_of_the_gpt2_embedding_and_head():
    base = compose_config(["model=baseline"]).model
    assert base.d_model == 512
    byte = dataclasses.replace(base, embedder="byte_pooled", head="byte_decoder", tie_embeddings=False,
                               byte_dim=128, byte_layers=2, byte_decoder_layers=2, byte_chunk_max=16)
    def count(cfg):  # shapes only: built on the meta device, no memory or initialisation
        with torch.device("meta"):
            return count_parameters(build_model(cfg, 50257), flops=False).by_component

    bpe, untied = count(base), count(dataclasses.replace(base, tie_embeddings=False))
    pooled = count(byte)
    gpt2_tied = bpe["embedding"] + bpe["head"]
    gpt2_untied = untied["embedding"] + untied["head"]
    assert round(gpt2_tied / 1e6, 1) == 25.7 and round(gpt2_untied / 1e6, 1) == 51.5
    replaced = pooled["embedding"] + pooled["head"]
    assert 1 - replaced / gpt2_tied > 0.90 and 1 - replaced / gpt2_untied > 0.95
    # the core is the same model
    assert all(pooled[c] == bpe[c] for c in ("attention", "mlp"))


@pytest.mark.shared_data
@pytest.mark.slow
def test_byte_pooled_trains_and_eval_bpb_equals_the_training_runs(tmp_path, capsys):
    """Train the preset end to end on GPT-2 chunks of at most 8 bytes; `stlm eval --tasks bpb`
    reproduces the run's own validation bpb, and generation writes valid UTF-8."""
    import json
    from pathlib import Path

    from stlm.cli import main
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    gpt2 = require_shared("gpt2-bpe")
    overrides = [f"runs_dir={tmp_path / 'runs'}", "run_name=byte", "experiment=byte_pooled",
                 f"data.tokenizer.path={gpt2}", "data.tokenizer.max_chunk_bytes=8", "model.byte_chunk_max=8",
                 "model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.d_ff=64",
                 "model.byte_dim=32", "model.byte_heads=2", "model.context_length=32", "train.context_length=32",
                 "data.sources.0.max_documents=800", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.batch_size=8", "train.max_steps=30", "train.warmup_steps=3", "train.lr=1e-2",
                 "train.min_lr=1e-3", "train.log_every=5", "train.eval_every=30", "train.eval_batches=2",
                 "train.checkpoint_every=30", "train.progress=false", "train.threads=1",
                 "eval.minimal_pairs=false", "eval.sample_tokens=8"]
    summary = run_training(compose_config(overrides), echo=lambda s: None)
    losses = [r["loss"] for r in read_metrics(Path(summary["run_dir"]) / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0] - 1.0  # it learns (nats per chunk)
    assert "\ufffd" not in summary["sample"]["text"]
    capsys.readouterr()
    assert main(["eval", summary["run_dir"], "--tasks", "bpb", "--batch-size", "8"]) == 0
    evaluated = json.loads((Path(summary["run_dir"]) / "eval" / "bpb.json").read_text())
    assert evaluated["bpb"] == pytest.approx(summary["val_bpb"], rel=1e-4)


def test_logits_are_every_ids_chunk_log_probability(one_thread):
    """`forward`'s logits over the vocabulary are log p(chunk + EOC) of every id, the numbers the
    scoring call gives one target at a time; ids with no chunk (padding rows) are -inf; they sum
    to at most 1, and the remainder column of an export makes them a distribution."""
    from stlm.hf.modeling_stlm import with_remainder
    from stlm.tokenizers import BPETokenizer

    bpe = BPETokenizer.train(["the cat sat on the mat; the dog ran to the cat. " * 30], 270)
    torch.manual_seed(0)
    model = build_model(small(byte_chunk_max=16, pad_vocab_to=64), bpe).eval()
    spelled = model.head.chunks.lengths > 0
    assert model.vocab_size > bpe.vocab_size and int(spelled.sum()) == bpe.vocab_size
    assert int(model.head.chunks.lengths.max()) > 2  # multi-byte chunks, grouped by length
    ids = torch.tensor([bpe.encode("the cat sat on the mat")])
    with torch.no_grad():
        logits = model(ids).logits
        h = model.encode(ids)[0]
        every = torch.arange(model.vocab_size)[spelled]
        one_by_one, _ = model.target_logprobs(h.repeat_interleave(len(every), 0), every.repeat(h.shape[0]))
    assert logits.shape == (1, ids.shape[1], model.vocab_size) and model.logits_are_logprobs
    torch.testing.assert_close(logits[0][:, spelled], one_by_one.view(h.shape[0], -1), rtol=0, atol=1e-5)
    assert torch.isneginf(logits[..., ~spelled]).all()
    total = logits.logsumexp(-1)
    assert (total < 0).all() and (total > -20).all()  # a real share of the mass, never more than all
    full = with_remainder(logits)
    torch.testing.assert_close(full.logsumexp(-1), torch.zeros_like(total), rtol=0, atol=1e-6)
    torch.testing.assert_close(full.log_softmax(-1)[..., : model.vocab_size], logits, rtol=0, atol=1e-6)
    with torch.no_grad():  # training computes the loss, not these logits
        out = model(ids, torch.roll(ids, -1, 1))
    assert out.logits is None and not model.logits_in_training
    targets = torch.roll(ids, -1, 1)[0]
    torch.testing.assert_close(out.loss, -logits[0].gather(-1, targets[:, None]).mean(), rtol=0, atol=1e-5)
