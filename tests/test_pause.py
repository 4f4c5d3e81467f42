"""Pause tokens (Goyal et al., 2023): insertion in training batches (no loss on pauses, every real
target kept), a learnable pause embedding that keeps the model causal and its KV cache exact,
K pauses after the prompt in generation and before each continuation in scoring, and honest bits
per byte. (That the trainer inserts pauses and trains the pause vector is checked by the
conditional study's test, which trains the pause preset.)"""

import dataclasses

import numpy as np
import pytest
import torch

from stlm.batch import IGNORE_INDEX, Batch
from stlm.config import compose_config
from stlm.config.loader import ConfigError
from stlm.data.transforms import build_batch_transforms, with_transforms
from stlm.data.transforms.pauses import insert_pauses
from stlm.eval.bpb import bits_per_byte
from stlm.eval.scoring import score_continuations
from stlm.generate import generate_ids
from stlm.models import build_model
from stlm.models.components.pause import PAUSE_ID

VOCAB = 53


def _model(k: int = 2, preset: str = "tiny-1m-pause", seed: int = 0):
    cfg = dataclasses.replace(compose_config([f"model={preset}"]).model, d_model=32, n_heads=4, d_ff=64,
                              context_length=48, pause_tokens=k)
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB).double().eval()


def _stream(rows: int = 3, length: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length + 1), generator=torch.Generator().manual_seed(seed))


def test_insertion_keeps_every_real_target_and_scores_no_pause():
    seq = _stream()
    batch = Batch(seq[:, :-1], seq[:, 1:])
    out = insert_pauses(batch, 0.25, np.random.default_rng(3))
    assert out.ids.shape == batch.ids.shape and out.loss_mask.shape == batch.ids.shape
    for r in range(seq.shape[0]):
        assert int((out.ids[r] == PAUSE_ID).sum()) >= 1
        real = out.ids[r][out.ids[r] != PAUSE_ID]
        assert torch.equal(real, seq[r, : len(real)])  # the text in order, cut at the window's end
        scored = out.loss_mask[r]
        # a scored position predicts the next real token; its input is a pause or the token before
        assert torch.equal(out.targets[r][scored], seq[r, 1 : int(scored.sum()) + 1])
        assert bool((out.targets[r][~scored] == IGNORE_INDEX).all())
        nxt = torch.cat([out.ids[r, 1:], torch.tensor([0])])
        assert bool((~scored[:-1] == (nxt[:-1] == PAUSE_ID)).all())  # unscored exactly before a pause
    again = insert_pauses(batch, 0.25, np.random.default_rng(3))
    assert torch.equal(again.ids, out.ids)
    assert torch.equal(insert_pauses(batch, 0.0, np.random.default_rng(3)).ids, batch.ids)
    with pytest.raises(ValueError, match="extras"):
        insert_pauses(Batch(batch.ids, batch.targets, extras={"positions": torch.arange(20)}), 0.1,
                      np.random.default_rng(0))


def test_transform_is_chosen_by_the_model_and_seeded_by_step():
    plain = compose_config(["model=tiny-1m"])
    pause = compose_config(["model=tiny-1m-pause"])
    assert build_batch_transforms(plain) == [] and len(build_batch_transforms(pause)) == 1

    class Source:
        def batch(self, i):
            seq = _stream(2, 64, seed=i)
            return Batch(seq[:, :-1], seq[:, 1:])

    src = with_transforms(Source(), pause)
    assert with_transforms(Source(), plain).__class__ is Source
    assert torch.equal(src.batch(5).ids, src.batch(5).ids)
    assert not torch.equal(src.batch(5).ids == PAUSE_ID, src.batch(6).ids == PAUSE_ID)
    assert 0 < int((src.batch(5).ids == PAUSE_ID).sum()) <= 2 * round(0.1 * 64)  # some fall past the cut


def test_pauses_keep_the_model_causal_and_the_kv_cache_exact(one_thread):
    model = _model()
    x = _stream(2, 16)[:, :-1].clone()
    x[:, [3, 4, 9]] = PAUSE_ID
    with torch.no_grad():
        full = model(x).logits
        y = x.clone()
        y[:, 6] = (y[:, 6] + 1) % VOCAB
        moved = (model(y).logits - full).abs().amax(dim=(0, 2))
        assert float(moved[:6].max()) == 0.0 and float(moved[6:].min()) > 0
        model.pause.vector.add_(0.5)  # the pause vector reaches the positions from the first pause on
        moved = (model(x).logits - full).abs().amax(dim=(0, 2))
        model.pause.vector.sub_(0.5)
        assert float(moved[:3].max()) == 0.0 and float(moved[3:].min()) > 0
        cache = model.new_cache()
        steps = [model(x[:, :5], cache=cache).logits] + [model(x[:, t : t + 1], cache=cache).logits
                                                         for t in range(5, x.shape[1])]
        torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_generation_appends_k_pauses_after_the_prompt(one_thread):
    model = _model(k=3)
    prompt = [5, 9, 2]
    with_cache = generate_ids(model, prompt, 12, temperature=0)
    assert with_cache == generate_ids(model, prompt, 12, temperature=0, use_cache=False)
    with torch.no_grad():
        first = model(torch.tensor([prompt + [PAUSE_ID] * 3])).logits[0, -1].argmax()
        without = model(torch.tensor([prompt])).logits[0, -1].argmax()
    assert with_cache[0] == int(first) and all(t >= 0 for t in with_cache)
    model.cfg = dataclasses.replace(model.cfg, pause_tokens=0)  # the same weights, no pauses
    assert generate_ids(model, prompt, 1, temperature=0)[0] == int(without)


def test_scoring_inserts_k_pauses_before_each_continuation(one_thread):
    model = _model(k=2)
    requests = [([1, 4, 7], [9, 3]), ([1, 4], [8])]
    scores = score_continuations(model, requests)
    for (ctx, cont), score in zip(requests, scores):
        seq = torch.tensor([ctx + [PAUSE_ID] * 2 + cont])
        with torch.no_grad():
            logp = model.logprobs(seq[:, :-1], seq[:, 1:].clamp(min=0))[0][0]
        assert score.logprob == pytest.approx(float(logp[-len(cont):].sum()), abs=1e-5)
        assert score.n_tokens == len(cont)
    plain = score_continuations(model, requests, pauses=0)
    with torch.no_grad():
        direct = model.logprobs(torch.tensor([[1, 4, 7, 9]]), torch.tensor([[4, 7, 9, 3]]))[0][0]
    assert plain[0].logprob == pytest.approx(float(direct[-2:].sum()), abs=1e-5)
    with pytest.raises(ValueError, match="no pause embedding"):
        score_continuations(_model(k=0, preset="tiny-1m"), requests, pauses=2)


def test_bits_per_byte_counts_real_targets_only(one_thread):
    model = _model()
    seq = _stream(4, 24)
    batch = insert_pauses(Batch(seq[:, :-1], seq[:, 1:]), 0.2, np.random.default_rng(0))
    lengths = np.arange(VOCAB) % 3 + 1
    res = bits_per_byte(model.float(), [batch], lengths)
    scored = batch.targets[batch.loss_mask]
    assert res["tokens"] == int(batch.loss_mask.sum()) < batch.ids.numel()
    assert res["bytes"] == int(lengths[scored.numpy()].sum())


@pytest.mark.parametrize("override, message", [("model.pause_tokens=-1", "model.pause_tokens must be >= 0"),
                                               ("model.pause_fraction=1.0", "model.pause_fraction must be in")])
def test_bad_pause_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        compose_config(["model=tiny-1m-pause", override])


def test_a_pause_model_has_no_llama_twin_to_export():
    from stlm.hf.llama import check_llama_compatible

    check_llama_compatible(compose_config(["model=tiny-1m"]).model)
    with pytest.raises(ValueError, match="pause_tokens=0"):
        check_llama_compatible(compose_config(["model=tiny-1m-pause"]).model)
