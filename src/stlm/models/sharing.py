"""Cross-layer weight sharing: which layers reuse one attention or FFN module.

- FFN sharing across all layers (MobiLlama, Thawakar et al., 2024, arXiv 2402.16840) or across the
  interior layers only, keeping the first and last layers unique (STLM's ffn-sharing study).
- Whole-block (attention + FFN) sharing in contiguous groups (ALBERT, Lan et al., 2019,
  arXiv 1909.11942; SLlama's layer sharing with n_group groups; groups=1 shares one block).
- Optionally a LoRA adapter per layer on every shared linear weight (`stlm.models.lora`).

Sharing is by object identity: a shared module appears in several blocks, so its parameters are
one tensor, saved once and counted once. Norms are never shared.
"""

from __future__ import annotations

from torch import nn

from stlm.errors import ConfigError
from stlm.config.schema import ModelConfig
from stlm.models.lora import LoRAShared
from stlm.models.registry import lookup


def layer_groups(n_layers: int, groups: int) -> list[int]:
    """Group index of each layer for `groups` contiguous groups (SLlama: floor(i * g / L))."""
    if not 1 <= groups <= n_layers:
        raise ConfigError(f"model.sharing.groups must be in [1, n_layers={n_layers}], got {groups}")
    return [i * groups // n_layers for i in range(n_layers)]


def check_sharing(cfg: ModelConfig) -> None:
    """Refuse sharing settings that contradict each other or share nothing."""
    s = cfg.sharing
    if s.layers != "none" and s.ffn != "none":
        raise ConfigError(f"model.sharing.layers={s.layers} already shares the FFNs; set "
                          f"model.sharing.ffn=none (got {s.ffn})")
    if s.lora_rank < 0:
        raise ConfigError(f"model.sharing.lora_rank must be >= 0, got {s.lora_rank}")
    if s.lora_rank and s.layers == "none" and s.ffn == "none":
        raise ConfigError("model.sharing.lora_rank adapts shared weights but nothing is shared; set "
                          "model.sharing.layers=groups or model.sharing.ffn=all|interior")


def ffn_owner(cfg: ModelConfig) -> list[int]:
    """For each layer, the layer whose FFN it uses (itself when unshared)."""
    n, s = cfg.n_layers, cfg.sharing
    if s.layers == "groups":
        return attention_owner(cfg)
    if s.ffn == "all":
        return [0] * n
    if s.ffn == "interior":
        k = s.interior_skip
        if k < 0 or n - 2 * k < 2:
            raise ConfigError(f"interior FFN sharing needs interior_skip >= 0 and n_layers - "
                              f"2*interior_skip >= 2 (n_layers={n}, interior_skip={k})")
        return [k if k <= i < n - k else i for i in range(n)]
    return list(range(n))


def attention_owner(cfg: ModelConfig) -> list[int]:
    """For each layer, the layer whose attention module it uses (the first of its group)."""
    if cfg.sharing.layers == "groups":
        groups = layer_groups(cfg.n_layers, cfg.sharing.groups)
        return [groups.index(g) for g in groups]
    return list(range(cfg.n_layers))


def _share(cls: type, cfg: ModelConfig, owner: list[int]) -> list[nn.Module]:
    """One module per layer; layer i reuses layer owner[i]'s object, wrapped in a per-layer LoRA
    view when adapters are on and the module is shared and has linear weights."""
    modules: list[nn.Module] = []
    for i, o in enumerate(owner):
        modules.append(cls(cfg, i) if o == i else modules[o])
    r = cfg.sharing.lora_rank
    if r == 0:
        return modules
    uses = [owner.count(o) for o in owner]
    return [LoRAShared(m, r, cfg.sharing.lora_alpha)
            if n > 1 and any(isinstance(c, nn.Linear) for c in m.modules()) else m
            for m, n in zip(modules, uses)]


def build_layer_modules(cfg: ModelConfig) -> tuple[list[nn.Module], list[nn.Module]]:
    """One attention and one FFN module per layer, shared objects where the config says so."""
    check_sharing(cfg)
    attns = _share(lookup("attention", cfg.attention), cfg, attention_owner(cfg))
    ffns = _share(lookup("ffn", cfg.ffn), cfg, ffn_owner(cfg))
    return attns, ffns
