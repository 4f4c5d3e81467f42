"""The model contract: parity with transformers' Llama, KV-cache equality, parameter accounting."""

from __future__ import annotations

import pytest
import torch

from stlm.config.loader import compose_config
from stlm.config.schema import ModelConfig
from stlm.models import build_model
from stlm.models.params import count_parameters

transformers = pytest.importorskip("transformers")


def _randomize_norms(model: torch.nn.Module) -> None:
    """Norm scales start at one; give them random values so a wrong norm mapping shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)


@pytest.mark.parametrize("shape", [
    dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, d_ff=160),  # multi-head
    dict(d_model=96, n_layers=3, n_heads=6, n_kv_heads=2, d_ff=200, rope_theta=500000.0,
         norm_eps=1e-5),  # grouped-query, Llama-3 rope theta
    dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=128, tie_embeddings=True),  # MQA, tied
])
def test_logits_equal_transformers_llama(shape):
    from stlm.hf.llama import llama_config_for

    torch.manual_seed(0)
    cfg = ModelConfig(context_length=64, **shape)
    ours = build_model(cfg, 257).eval()
    _randomize_norms(ours)
    hf_cfg = llama_config_for(cfg, 257)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    # copy by the documented name map, then check the HF model really uses every tensor we set
    from stlm.hf.llama import hf_name

    hf_state = hf.state_dict()
    with torch.no_grad():
        for name, tensor in ours.state_dict().items():
            hf_state[hf_name(name)].copy_(tensor)
    if cfg.tie_embeddings:
        hf.tie_weights()
    ids = torch.randint(0, 257, (3, 50))
    diff = (ours(ids).logits - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4, f"max |logit difference| {diff}"


def test_parity_check_detects_a_wrong_weight():
    """The parity comparison is sensitive: swapping gate and up projections breaks it."""
    from stlm.hf.llama import to_hf_llama

    torch.manual_seed(0)
    ours = build_model(ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=128), 100).eval()
    hf = to_hf_llama(ours)
    mlp = hf.model.layers[1].mlp
    with torch.no_grad():
        g = mlp.gate_proj.weight.clone()
        mlp.gate_proj.weight.copy_(mlp.up_proj.weight)
        mlp.up_proj.weight.copy_(g)
    ids = torch.randint(0, 100, (2, 20))
    assert (ours(ids).logits - hf(ids).logits).abs().max().item() > 1e-3


@pytest.mark.parametrize("positions", ["rope", "learned", "sincos"])
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 1, 3, 2]])
def test_kv_cache_decoding_equals_full_forward(positions, chunks):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=48, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=96, context_length=32,
                      positions=positions)
    model = build_model(cfg, 61).eval()
    ids = torch.randint(0, 61, (2, sum(chunks)))
    with torch.no_grad():
        full = model(ids).logits
        cache, outs, pos = model.new_cache(), [], 0
        for n in chunks:
            outs.append(model(ids[:, pos:pos + n], cache=cache).logits)
            pos += n
    assert cache.length == ids.shape[1]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)


def test_baseline_preset_matches_the_stlm_paper():
    cfg = compose_config(["model=baseline"]).model
    report = count_parameters(build_model(cfg))
    assert abs(report.total - 49.86e6) / 49.86e6 < 0.01
    # "the embeddings take up 25M parameters": about half of the model
    assert 0.45 < report.embedding / report.total < 0.55
    assert report.by_component["head"] == 0  # tied: counted once, at the embedding


def test_untied_head_is_counted_separately():
    cfg = compose_config(["model=baseline", "model.tie_embeddings=false"]).model
    report = count_parameters(build_model(cfg))
    assert report.by_component["head"] == 50257 * 512
    assert report.total == 49_857_536 + 50257 * 512


def test_flops_count_shared_layers_per_use():
    """A block shared by all layers is stored once but computed in every layer."""
    base = ModelConfig(d_model=32, n_layers=4, n_heads=2, d_ff=64, context_length=16)
    shared = ModelConfig(d_model=32, n_layers=4, n_heads=2, d_ff=64, context_length=16)
    shared.sharing.layers = "groups"
    a, b = count_parameters(build_model(base, 50)), count_parameters(build_model(shared, 50))
    assert b.total < a.total
    assert a.flops_per_token == b.flops_per_token


def test_vocab_follows_tokenizer_and_refuses_a_too_small_table():
    from stlm.models import resolve_vocab_size

    assert resolve_vocab_size(ModelConfig(pad_vocab_to=64), 1000) == 1024
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        resolve_vocab_size(ModelConfig(vocab_size=500), 1000)


def test_init_scales_residual_projections():
    cfg = ModelConfig(d_model=256, n_layers=8, n_heads=4, d_ff=512, init_std=0.02)
    torch.manual_seed(0)
    model = build_model(cfg, 1000)
    o = model.core.blocks[0].attn.o_proj.weight.std().item()
    q = model.core.blocks[0].attn.q_proj.weight.std().item()
    assert abs(q - 0.02) < 0.002
    assert abs(o - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * 8)
