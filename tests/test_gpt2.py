"""GPT-2 in stlm: the `gpt2` preset computes what transformers' GPT2LMHeadModel computes with the
same weights, and learned absolute positions start as GPT-2's do, N(0, init_std)."""

from __future__ import annotations

import pytest
import torch

from stlm.config.loader import compose_config
from stlm.models import build_model

transformers = pytest.importorskip("transformers")

SMALL = ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.d_ff=256",
         "model.context_length=64", "model.vocab_size=300"]


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    return getattr(out, "logits", out)


def _gpt2_state(ours: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our weights under GPT-2's names. GPT-2 stores its projections as Conv1D (in x out), so
    every linear weight is transposed; q, k and v are one fused `c_attn`."""
    s = ours.state_dict()
    out = {"transformer.wte.weight": s["embedder.token.weight"],
           "transformer.wpe.weight": s["embedder.positions.weight"],
           "transformer.ln_f.weight": s["head.norm.weight"], "transformer.ln_f.bias": s["head.norm.bias"],
           "lm_head.weight": s["head.linear.weight"]}
    for i in range(len(ours.core.blocks)):
        b, h = f"core.blocks.{i}.", f"transformer.h.{i}."
        for ours_norm, hf_norm in (("attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
            for p in ("weight", "bias"):
                out[f"{h}{hf_norm}.{p}"] = s[f"{b}{ours_norm}.{p}"]
        qkv = [f"{b}attn.{x}_proj" for x in "qkv"]
        out[f"{h}attn.c_attn.weight"] = torch.cat([s[f"{n}.weight"] for n in qkv]).T
        out[f"{h}attn.c_attn.bias"] = torch.cat([s[f"{n}.bias"] for n in qkv])
        for ours_lin, hf_lin in (("attn.o_proj", "attn.c_proj"), ("ffn.up_proj", "mlp.c_fc"),
                                 ("ffn.down_proj", "mlp.c_proj")):
            out[f"{h}{hf_lin}.weight"] = s[f"{b}{ours_lin}.weight"].T
            out[f"{h}{hf_lin}.bias"] = s[f"{b}{ours_lin}.bias"]
    return out


def _gpt2_pair():
    cfg = compose_config(["model=gpt2", *SMALL]).model
    torch.manual_seed(0)
    ours = build_model(cfg, cfg.vocab_size).eval()
    with torch.no_grad():  # norms start at (1, 0) and biases at 0: randomise so a wrong map shows
        for name, p in ours.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.uniform_(-0.5, 0.5)
    hf_cfg = transformers.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.d_model,
        n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.d_ff, activation_function="gelu_new",
        layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    state = _gpt2_state(ours)
    missing = {n for n, _ in hf.named_parameters()} - set(state)
    assert not missing, f"GPT-2 parameters our model has no weight for: {sorted(missing)}"
    with torch.no_grad():
        hf_state = hf.state_dict()
        for name, tensor in state.items():
            hf_state[name].copy_(tensor)
    return ours, hf


def test_gpt2_preset_is_gpt2_small():
    cfg = compose_config(["model=gpt2"]).model
    with torch.device("meta"):  # shapes only: no 124M-parameter initialisation
        n = sum(p.numel() for p in build_model(cfg, cfg.vocab_size).parameters())
    assert n == 124_439_808  # GPT-2 small, tied embeddings counted once


def test_logits_equal_transformers_gpt2():
    ours, hf = _gpt2_pair()
    ids = torch.randint(0, 300, (3, 64))
    diff = (_logits(ours, ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4, f"max |logit difference| {diff}"


def test_gpt2_parity_check_detects_a_wrong_weight():
    """The comparison is sensitive: one perturbed MLP bias in the last layer breaks it."""
    ours, hf = _gpt2_pair()
    with torch.no_grad():
        hf.transformer.h[-1].mlp.c_fc.bias[0] += 0.5
    ids = torch.randint(0, 300, (2, 32))
    assert (_logits(ours, ids) - hf(ids).logits).abs().max().item() > 1e-3


@pytest.mark.parametrize("embedder", ["token", "rrhp"])
def test_learned_positions_start_like_gpt2(embedder):
    """N(0, init_std), not zeros: with zeros every position looks alike at the first step."""
    cfg = compose_config(["model=learned_pe", "model.d_model=64", "model.n_layers=1",
                          "model.n_heads=4", "model.n_kv_heads=1", "model.d_ff=128",
                          "model.context_length=512", "model.init_std=0.05",
                          f"model.embedder={embedder}", "model.tie_embeddings=false"]).model
    torch.manual_seed(0)
    table = build_model(cfg, 100).embedder.positions.weight
    assert table.requires_grad and table.shape == (512, 64)
    assert abs(table.mean().item()) < 0.005
    assert abs(table.std().item() - 0.05) < 0.005
