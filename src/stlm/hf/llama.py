"""Our modern model as `transformers.LlamaForCausalLM`: the parity contract and the export path.

With RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention and no biases, our model is
arithmetically the same as Hugging Face Llama; only parameter names differ. `HF_NAMES` is the one
place that maps them.
"""

from __future__ import annotations

import re

import torch

from stlm.config.schema import ModelConfig

HF_NAMES = [  # (our name pattern, HF name pattern)
    (r"embedder\.token\.weight", "model.embed_tokens.weight"),
    (r"core\.blocks\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"core\.blocks\.(\d+)\.attn\.([qkvo])_proj\.weight", r"model.layers.\1.self_attn.\2_proj.weight"),
    (r"core\.blocks\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"core\.blocks\.(\d+)\.ffn\.(gate|up|down)_proj\.weight", r"model.layers.\1.mlp.\2_proj.weight"),
    (r"head\.norm\.weight", "model.norm.weight"),
    (r"head\.linear\.weight", "lm_head.weight"),
]


def check_llama_compatible(cfg: ModelConfig) -> None:
    plain = (cfg.embedder == "token" and cfg.positions == "rope" and cfg.norm == "rmsnorm"
             and cfg.attention == "gqa" and cfg.ffn == "swiglu" and cfg.head == "token" and not cfg.bias)
    if not plain:
        raise ValueError(f"model '{cfg.name}' is not a plain Llama (embedder=token, positions=rope, "
                         "norm=rmsnorm, attention=gqa, ffn=swiglu, head=token, bias=false); it has no "
                         "LlamaForCausalLM twin")


def llama_config_for(cfg: ModelConfig, vocab_size: int):
    """A `transformers.LlamaConfig` of exactly our model's shape."""
    from transformers import LlamaConfig

    check_llama_compatible(cfg)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads, max_position_embeddings=cfg.context_length,
        rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False, mlp_bias=False, hidden_act="silu", attention_dropout=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def hf_name(ours: str) -> str:
    for pattern, replacement in HF_NAMES:
        if re.fullmatch(pattern, ours):
            return re.sub(pattern, replacement, ours)
    raise KeyError(f"parameter '{ours}' has no Hugging Face Llama counterpart")


@torch.no_grad()
def to_hf_llama(model) -> "torch.nn.Module":
    """A `LlamaForCausalLM` carrying copies of our model's weights (float32, eval mode)."""
    from transformers import LlamaForCausalLM

    hf_cfg = llama_config_for(model.cfg, model.vocab_size)
    if hasattr(hf_cfg, "rope_parameters"):  # transformers >= 5 keeps rope theta here
        hf_cfg.rope_parameters = {"rope_type": "default", "rope_theta": model.cfg.rope_theta}
    hf = LlamaForCausalLM(hf_cfg)
    target = hf.state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("core.rope"):
            continue
        key = hf_name(name)
        if key not in target:
            raise KeyError(f"{key} missing from LlamaForCausalLM")
        target[key].copy_(tensor)
    if model.cfg.tie_embeddings:
        hf.tie_weights()
    return hf.eval()
