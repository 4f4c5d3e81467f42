"""Modern-architecture switches: QK-norm, ReLU-squared MLP, zero-initialised output projections
and logit soft-capping, each checked against a computation written out here."""

from __future__ import annotations

import math

import torch

from stlm.config.schema import ModelConfig
from stlm.models import build_model

V, T = 40, 12


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=V, context_length=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48)
    return ModelConfig(**{**base, **kw})


def ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(seed))


def reference_qk_norm_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Causal attention with RMSNorm on each head's q and k before rotate-half RoPE, from scratch."""
    b, t, d = x.shape
    h, hk, hd = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = (x @ attn.q_proj.weight.T).view(b, t, h, hd).transpose(1, 2)
    k = (x @ attn.k_proj.weight.T).view(b, t, hk, hd).transpose(1, 2)
    v = (x @ attn.v_proj.weight.T).view(b, t, hk, hd).transpose(1, 2)
    rms = lambda z, w: z / torch.sqrt(z.pow(2).mean(-1, keepdim=True) + 1e-6) * w  # noqa: E731
    q, k = rms(q, attn.qk_norm.q_norm.weight), rms(k, attn.qk_norm.k_norm.weight)
    inv = 1.0 / 10000.0 ** (torch.arange(0, hd, 2).float() / hd)
    ang = torch.arange(t).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda z: z * cos + torch.cat([-z[..., hd // 2:], z[..., : hd // 2]], -1) * sin  # noqa: E731
    q, k = rot(q), rot(k)
    k, v = k.repeat_interleave(h // hk, 1), v.repeat_interleave(h // hk, 1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h * hd)
    return y @ attn.o_proj.weight.T


def test_qk_norm_matches_reference_and_makes_attention_scale_invariant():
    torch.manual_seed(0)
    model = build_model(tiny(qk_norm=True)).eval()
    attn = model.core.blocks[0].attn
    with torch.no_grad():
        attn.qk_norm.q_norm.weight.uniform_(0.5, 1.5)  # non-trivial learned scales
        attn.qk_norm.k_norm.weight.uniform_(0.5, 1.5)
        x = torch.randn(2, T, 32)
        rope = model.core.rope(torch.arange(T))
        torch.testing.assert_close(attn(x, rope), reference_qk_norm_attention(attn, x), rtol=1e-4, atol=1e-5)
        before = attn(x, rope)
        attn.q_proj.weight.mul_(7.0)  # normalised per head: the scale of q and k no longer matters
        attn.k_proj.weight.mul_(3.0)
        torch.testing.assert_close(attn(x, rope), before, rtol=1e-4, atol=1e-5)
    plain = build_model(tiny()).eval().core.blocks[0].attn
    with torch.no_grad():
        out = plain(x, rope)
        plain.q_proj.weight.mul_(7.0)
        assert not torch.allclose(plain(x, rope), out, atol=1e-4)  # without QK-norm it does


def test_relu2_mlp_is_down_of_squared_relu():
    torch.manual_seed(0)
    ffn = build_model(tiny(ffn="relu2")).core.blocks[0].ffn
    x = torch.randn(3, 5, 32)
    h = x @ ffn.up_proj.weight.T
    want = (torch.where(h > 0, h, torch.zeros_like(h)) ** 2) @ ffn.down_proj.weight.T
    torch.testing.assert_close(ffn(x), want, rtol=1e-5, atol=1e-6)
    assert sorted(n for n, _ in ffn.named_parameters()) == ["down_proj.weight", "up_proj.weight"]


def test_zero_init_projections_start_each_block_as_identity_then_learn():
    torch.manual_seed(0)
    model = build_model(tiny(zero_init_projections=True, qk_norm=True))
    zero = {n for n, p in model.named_parameters() if p.dim() == 2 and not p.any()}
    assert zero == {f"core.blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.o_proj", "ffn.down_proj")}
    x = ids()
    pos = torch.arange(T)
    with torch.no_grad():  # the core is the identity: logits = head(embedding)
        torch.testing.assert_close(model(x).logits, model.head(model.embedder(x, pos)), rtol=0, atol=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(3):
        model(ids(step), ids(step + 10)).loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(model.get_parameter(n).abs().sum() > 0 for n in zero)  # the projections learned
    model.eval()
    with torch.no_grad():
        full = model(x).logits
        assert not torch.allclose(full, model.head(model.embedder(x, pos)), atol=1e-4)
        cache = model.new_cache()  # with attention now contributing, the KV cache still agrees
        pieces = [model(x[:, :5], cache=cache).logits] + [model(x[:, t : t + 1], cache=cache).logits
                                                          for t in range(5, T)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-5)


def test_default_init_is_unchanged_by_the_switch():
    torch.manual_seed(0)
    a = build_model(tiny())
    torch.manual_seed(0)
    b = build_model(tiny(qk_norm=False, zero_init_projections=False))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.core.blocks[0].attn.o_proj.weight.std() > 0


def test_logit_softcap_bounds_logits_everywhere_the_head_is_used():
    cap = 5.0
    torch.manual_seed(0)
    model = build_model(tiny(logit_softcap=cap, tie_embeddings=True)).eval()
    with torch.no_grad():
        model.head.linear.weight.mul_(200.0)  # raw logits far beyond the cap
    x, y = ids(1), ids(2)
    with torch.no_grad():
        h = model.encode(x)
        raw = model.head.linear(model.head.norm(h))  # the uncapped logits
        assert raw.abs().max() > 10 * cap
        want = cap * torch.tanh(raw / cap)
        out = model(x, y)
        torch.testing.assert_close(out.logits, want, rtol=1e-5, atol=1e-5)
        assert out.logits.abs().max() <= cap  # tanh saturates to exactly 1 in float32
        ce = torch.nn.functional.cross_entropy(want.reshape(-1, V), y.reshape(-1))
        torch.testing.assert_close(out.lm_loss, ce, rtol=1e-5, atol=1e-6)  # the loss sees capped logits
        logp, _ = model.logprobs(x, y)  # and so does scoring
        torch.testing.assert_close(logp, want.log_softmax(-1).gather(-1, y[..., None])[..., 0],
                                   rtol=1e-5, atol=1e-5)
    off = build_model(tiny()).eval()
    assert off.head.softcap is None
