"""Batched scoring equals a plain full forward pass, and requests are tokenized as the harness does."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from stlm.config.schema import ModelConfig, MoDConfig
from stlm.eval.requests import encode_requests, split_pair
from stlm.eval import scoring
from stlm.eval.scoring import score_continuations
from stlm.models import build_model
from stlm.tokenizers import ByteTokenizer


pytestmark = pytest.mark.usefixtures("one_thread")


def reference(model, ctx, cont):
    """log p(cont | ctx) from one unbatched full forward pass, truncated as the harness does."""
    full = (list(ctx) + list(cont))[-(model.cfg.context_length + 1):]
    n = min(len(cont), len(full) - 1)
    logp = F.log_softmax(model(torch.tensor([full[:-1]])).logits.float(), -1)[0, len(full) - 1 - n:]
    target = torch.tensor(full[-n:])
    return logp.gather(-1, target[:, None]).sum().item(), bool((logp.argmax(-1) == target).all()), n


def random_requests(rng, vocab, n_items):
    """Items of 1-4 continuations sharing a context, some duplicated, some longer than the window."""
    reqs = []
    for _ in range(n_items):
        ctx = [rng.randrange(vocab) for _ in range(rng.randint(1, 30))]
        for _ in range(rng.randint(1, 4)):
            reqs.append((ctx, [rng.randrange(vocab) for _ in range(rng.randint(1, 12))]))
    return reqs + reqs[:7]


@pytest.mark.parametrize("positions, capacity", [("rope", 1.0), ("learned", 1.0), ("rope", 0.5)])
def test_batched_scores_equal_full_forward(positions, capacity):
    """Prefix sharing (one cache under several remainders) changes no score; with mixture-of-depths
    (capacity < 1) the rows of a cache route different tokens."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                                    context_length=24, positions=positions,
                                    mod=MoDConfig(capacity=capacity, every=2)), 61).eval()
    reqs = random_requests(random.Random(1), 61, 40)
    got = score_continuations(model, reqs, batch_size=5)
    assert len(got) == len(reqs)
    for (ctx, cont), score in zip(reqs, got):
        logprob, greedy, n = reference(model, ctx, cont)
        assert score.logprob == pytest.approx(logprob, abs=1e-4)
        assert (score.is_greedy, score.n_tokens) == (greedy, n)


def test_greedy_flag_and_model_mode():
    """A continuation of argmax tokens is greedy; scoring leaves a training model in training mode."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=32), 50)
    model.train()
    ctx, cont = [3, 4, 5], []
    with torch.no_grad():
        for _ in range(4):
            cont.append(int(model.eval()(torch.tensor([ctx + cont])).logits[0, -1].argmax()))
    model.train()
    greedy, other = score_continuations(model, [(ctx, cont), (ctx, cont[:-1] + [(cont[-1] + 1) % 50])])
    assert greedy.is_greedy and not other.is_greedy
    assert model.training


def test_empty_inputs_are_refused():
    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, context_length=16), 20)
    with pytest.raises(ValueError, match="continuation"):
        score_continuations(model, [([1], [])])
    with pytest.raises(ValueError, match="context"):
        score_continuations(model, [([], [1])])


def test_split_pair_moves_trailing_whitespace():
    assert split_pair("Answer: ", "Paris") == ("Answer:", " Paris")
    assert split_pair("Q\n \t", "x") == ("Q", "\n \tx")
    assert split_pair("Answer:", " Paris") == ("Answer:", " Paris")


PAIRS = [("", " The cat sleeps."), ("Question: 2+2?\nAnswer:", " 4"), ("Answer: ", "Paris"),
         ("Ends in space ", " and more"), ("naïve café", " crème brûlée"), ("abc", "def"), ("x\n\n", "y")]


@pytest.mark.shared_data
def test_encoding_matches_template_lm_on_gpt2(shared_data):
    """Our split equals lm-eval's TemplateLM (loglikelihood + _encode_pair) token for token."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from stlm.eval.harness import StlmLM
    from stlm.tokenizers import GPT2Tokenizer

    tok = GPT2Tokenizer(shared_data("gpt2-bpe") / "r50k_base.tiktoken")
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, context_length=64), 50257)
    lm = StlmLM(model=model, tokenizer=tok)
    seen = []

    def record(reqs, **kwargs):
        seen.extend((ctx, cont) for _, ctx, cont in reqs)
        return [(0.0, True)] * len(reqs)

    lm._loglikelihood_tokens = record
    lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(PAIRS)])
    assert encode_requests(tok, PAIRS) == seen
    assert seen[0][0] == [tok.eot_id]  # empty context: end-of-text as prefix


def test_encoding_of_bytes():
    tok = ByteTokenizer()
    (ctx, cont), = encode_requests(tok, [("ab ", "c")])
    assert (ctx, cont) == ([97, 98], [32, 99])


def window_reference(model, ctx, cont, window):
    """log p(cont | ctx) with at most `window` inputs per forward pass: windows taken from the end
    backwards, each scoring the continuation tokens no later window scored (plain forward passes)."""
    full, total, end, n_windows = list(ctx) + list(cont), 0.0, len(ctx) + len(cont), 0
    while end > len(ctx):
        lo = max(0, end - 1 - window)
        logp = F.log_softmax(model(torch.tensor([full[lo:end - 1]])).logits.float(), -1)[0]
        for pos in range(max(len(ctx), lo + 1), end):  # predict full[pos] from the inputs before it
            total += logp[pos - lo - 1, full[pos]].item()
        end, n_windows = max(len(ctx), lo + 1), n_windows + 1
    return total, n_windows


def test_scoring_uses_the_trained_window_and_scores_long_continuations_whole():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=32), 50).eval()
    rng = random.Random(2)
    ctx = [rng.randrange(50) for _ in range(20)]
    tail = [rng.randrange(50) for _ in range(30)]
    short = (ctx, tail[:3])
    long_a, long_b = (ctx[:5], [1] + tail), (ctx[:5], [2] + tail)  # differ only in their first token
    got = score_continuations(model, [short, long_a, long_b], batch_size=2, context_length=8)
    for (c, x), score in zip([short, long_a, long_b], got):
        logprob, n_windows = window_reference(model, c, x, 8)
        assert score.logprob == pytest.approx(logprob, abs=1e-4)
        assert (score.windows, score.n_tokens) == (n_windows, len(x))
    assert got[0].windows == 1 and got[1].windows == 4
    assert got[1].logprob != got[2].logprob  # keeping only the last 8 tokens made these two tie
    # the default window is the model's context length
    assert score_continuations(model, [short])[0].logprob == pytest.approx(reference(model, *short)[0], abs=1e-4)


def multiple_choice_requests(rng, vocab, n_items):
    """Items like real tasks': a header shared by every item, a question, 2-5 choices of which
    some begin with the same tokens; a few items repeat, a few choices are longer than the window."""
    header = [rng.randrange(vocab) for _ in range(3)]
    reqs = []
    for _ in range(n_items):
        question = header + [rng.randrange(vocab) for _ in range(rng.randint(1, 40))]
        opening = [rng.randrange(vocab) for _ in range(rng.randint(1, 3))]
        for _ in range(rng.randint(2, 5)):
            start = opening if rng.random() < 0.5 else []
            reqs.append((question, start + [rng.randrange(vocab) for _ in range(rng.randint(1, 30))]))
    return reqs + reqs[:5]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_shared_prefix_scores_equal_plain_forward_in_any_order(batch_size):
    """Each request's log-likelihood from prefix sharing and length batching equals one plain
    forward pass of that request alone (1e-5 nats), whatever the batch size and request order."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                                    context_length=48), 97).eval()
    reqs = multiple_choice_requests(random.Random(3), 97, 30)
    plain = [window_reference(model, ctx, cont, 48)[0] for ctx, cont in reqs]
    order = list(range(len(reqs)))
    random.Random(batch_size).shuffle(order)
    got = score_continuations(model, [reqs[i] for i in order], batch_size=batch_size)
    for i, score in zip(order, got):
        assert score.logprob == pytest.approx(plain[i], abs=1e-5)


def counting_encodes(model) -> list[int]:
    """The positions (batch x length) of every `encode` call the model gets from now on."""
    encoded = []
    encode = model.encode

    def counting(ids, **kwargs):
        encoded.append(ids.numel())
        return encode(ids, **kwargs)

    model.encode = counting
    return encoded


def test_choices_share_their_question_once(monkeypatch):
    """Four choices after one question run the question once, even when two choices begin with
    the same token (which once split the item in two); two items that share only a first token
    run their questions apart. Counted as positions the model encodes, with calls costing
    nothing extra (the cost model then weighs positions alone)."""
    monkeypatch.setattr(scoring, "CALL_OVERHEAD_FLOPS", 0.0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, context_length=128), 100).eval()
    encoded = counting_encodes(model)
    question = [1] + list(range(2, 41))  # 40 tokens
    choices = [[70, 80, 1], [70, 90, 1], [71, 81, 1], [72, 82, 1]]  # inputs: question + 2 tokens
    score_continuations(model, [(question, c) for c in choices], batch_size=8)
    assert sum(encoded) == len(question) + 2 * len(choices)
    encoded.clear()
    other = [1] + list(range(41, 80))
    score_continuations(model, [(q, c) for q in (question, other) for c in ([70, 80], [71, 80])], batch_size=8)
    assert sum(encoded) == 2 * len(question) + 4  # each question once, then each choice's token


def test_tiny_model_runs_few_calls_where_sharing_saves_little(monkeypatch):
    """Pairs of sentences sharing a word or two (BLiMP-like): for a tiny model a forward call
    costs more than the positions sharing would save, so all 24 requests run whole in one call;
    with calls free, the shared words run once and there are more calls."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, context_length=64), 100).eval()
    rng = random.Random(4)
    reqs = []
    for _ in range(12):
        words = [rng.randrange(1, 100) for _ in range(rng.randint(6, 14))]
        cut = rng.randint(1, 3)
        reqs += [([0], words), ([0], words[:cut] + [rng.randrange(1, 100)] + words[cut + 1:])]
    encoded = counting_encodes(model)
    tiny = score_continuations(model, reqs, batch_size=64)
    assert len(encoded) == 1 and scoring._call_cost(model) > 1000
    encoded.clear()
    monkeypatch.setattr(scoring, "CALL_OVERHEAD_FLOPS", 0.0)
    free = score_continuations(model, reqs, batch_size=64)
    assert len(encoded) > 1
    assert [s.logprob for s in tiny] == pytest.approx([s.logprob for s in free], abs=1e-5)
