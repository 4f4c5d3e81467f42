"""Our modern model as `transformers.LlamaForCausalLM`: the parity contract, export and import.

With RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention and no biases, our model is
arithmetically the same as Hugging Face Llama; only parameter names differ. `HF_NAMES` is the one
place that maps them: `hf_name` reads it forwards (export), `stlm_name` backwards (import), and
`llama_config_for` / `model_config_from_llama` translate the shapes both ways.
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
             and cfg.attention == "gqa" and cfg.ffn == "swiglu" and cfg.head == "token" and not cfg.bias
             and not cfg.qk_norm and not cfg.logit_softcap and not cfg.pause_tokens
             and cfg.sharing.layers == "none"
             and cfg.sharing.ffn == "none"
             and (cfg.mod.capacity == 1.0 or cfg.mod.every > cfg.n_layers)
             and all(c == 1.0 for c in cfg.mod.per_layer))
    if not plain:
        raise ValueError(f"model '{cfg.name}' is not a plain Llama (embedder=token, positions=rope, "
                         "norm=rmsnorm, attention=gqa, ffn=swiglu, head=token, bias=false, qk_norm=false, "
                         "logit_softcap=null, no weight sharing, mod.capacity=1, pause_tokens=0); it has no "
                         "LlamaForCausalLM twin")


def is_plain_llama(cfg: ModelConfig) -> bool:
    """Whether `cfg` has a `LlamaForCausalLM` twin (else it exports with remote code)."""
    try:
        check_llama_compatible(cfg)
    except ValueError:
        return False
    return True


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


_GROUP = re.compile(r"\([^()]*\)")


def _inverse(pattern: str, replacement: str) -> tuple[str, str]:
    """`HF_NAMES` read backwards: the HF name as a pattern (each `\\N` becomes the N-th group of
    our pattern) and our pattern as the replacement (each group becomes `\\N`)."""
    groups = _GROUP.findall(pattern)
    parts = re.split(r"\\(\d)", replacement)
    hf_pattern = "".join(re.escape(p) if i % 2 == 0 else groups[int(p) - 1] for i, p in enumerate(parts))
    numbers = iter(range(1, len(groups) + 1))
    ours = _GROUP.sub(lambda _: f"\\{next(numbers)}", pattern).replace("\\.", ".")
    return hf_pattern, ours


STLM_NAMES = [_inverse(p, r) for p, r in HF_NAMES]


def stlm_name(hf: str) -> str:
    for pattern, replacement in STLM_NAMES:
        if re.fullmatch(pattern, hf):
            return re.sub(pattern, replacement, hf)
    raise KeyError(f"Hugging Face parameter '{hf}' has no stlm counterpart")


def model_config_from_llama(hf_cfg, name: str = "imported-llama") -> ModelConfig:
    """Our `ModelConfig` of exactly a `LlamaConfig`'s shape; refuses what our model cannot compute."""
    rope = getattr(hf_cfg, "rope_parameters", None) or getattr(hf_cfg, "rope_scaling", None) or {}
    problems = []
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        problems.append(f"rope scaling {rope.get('rope_type', rope.get('type'))!r}")
    if getattr(hf_cfg, "attention_bias", False) or getattr(hf_cfg, "mlp_bias", False):
        problems.append("biases")
    if getattr(hf_cfg, "hidden_act", "silu") != "silu":
        problems.append(f"activation {hf_cfg.hidden_act!r}")
    head_dim = getattr(hf_cfg, "head_dim", None)
    if head_dim is not None and head_dim * hf_cfg.num_attention_heads != hf_cfg.hidden_size:
        problems.append(f"head_dim {head_dim} != hidden_size / num_attention_heads")
    if problems:
        raise ValueError(f"this Llama has {', '.join(problems)}, which stlm's Llama does not implement")
    theta = rope.get("rope_theta", getattr(hf_cfg, "rope_theta", 10000.0))
    return ModelConfig(
        name=name, vocab_size=hf_cfg.vocab_size, context_length=hf_cfg.max_position_embeddings,
        d_model=hf_cfg.hidden_size, n_layers=hf_cfg.num_hidden_layers, n_heads=hf_cfg.num_attention_heads,
        n_kv_heads=hf_cfg.num_key_value_heads, d_ff=hf_cfg.intermediate_size, norm_eps=hf_cfg.rms_norm_eps,
        rope_theta=float(theta), tie_embeddings=bool(hf_cfg.tie_word_embeddings), bias=False, dropout=0.0,
    )


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
