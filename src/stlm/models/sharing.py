"""Cross-layer weight sharing: which layers reuse one attention or FFN module.

- FFN sharing across all layers (MobiLlama, Thawakar et al., 2024, arXiv 2402.16840) or across the
  interior layers only, keeping the first and last layers unique (STLM's ffn-sharing study).
- Whole-block (attention + FFN) sharing in contiguous groups (ALBERT, Lan et al., 2019,
  arXiv 1909.11942; SLlama's layer sharing with n_group groups).

Sharing is by object identity: a shared module appears in several blocks, so its parameters are
one tensor, saved once and counted once. Norms are never shared.
"""

from __future__ import annotations

from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.registry import lookup


def layer_groups(n_layers: int, groups: int) -> list[int]:
    """Group index of each layer for `groups` contiguous groups (SLlama: floor(i * g / L))."""
    if not 1 <= groups <= n_layers:
        raise ValueError(f"model.sharing.groups must be in [1, n_layers={n_layers}], got {groups}")
    return [i * groups // n_layers for i in range(n_layers)]


def ffn_owner(cfg: ModelConfig) -> list[int]:
    """For each layer, the layer whose FFN it uses (itself when unshared)."""
    n, s = cfg.n_layers, cfg.sharing
    if s.layers == "groups":
        groups = layer_groups(n, s.groups)
        return [groups.index(g) for g in groups]
    if s.ffn == "all":
        return [0] * n
    if s.ffn == "interior":
        k = s.interior_skip
        if not 0 <= k or n - 2 * k < 2:
            raise ValueError(f"interior FFN sharing needs n_layers - 2*interior_skip >= 2 "
                             f"(n_layers={n}, interior_skip={k})")
        return [k if k <= i < n - k else i for i in range(n)]
    return list(range(n))


def attention_owner(cfg: ModelConfig) -> list[int]:
    """For each layer, the layer whose attention module it uses."""
    if cfg.sharing.layers == "groups":
        groups = layer_groups(cfg.n_layers, cfg.sharing.groups)
        return [groups.index(g) for g in groups]
    return list(range(cfg.n_layers))


def build_layer_modules(cfg: ModelConfig) -> tuple[list[nn.Module], list[nn.Module]]:
    """One attention and one FFN module per layer, shared objects where the config says so."""
    attn_cls, ffn_cls = lookup("attention", cfg.attention), lookup("ffn", cfg.ffn)
    attn_owner, ffn_own = attention_owner(cfg), ffn_owner(cfg)
    attns: list[nn.Module] = []
    ffns: list[nn.Module] = []
    for i in range(cfg.n_layers):
        attns.append(attn_cls(cfg, i) if attn_owner[i] == i else attns[attn_owner[i]])
        ffns.append(ffn_cls(cfg, i) if ffn_own[i] == i else ffns[ffn_own[i]])
    return attns, ffns
