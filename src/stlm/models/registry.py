"""Name -> class registries for model components, filled by `@register(kind, name)`.

A component class takes `(cfg: ModelConfig, layer_idx: int)` for per-layer parts (attention, ffn)
or `(cfg: ModelConfig, vocab_size: int)` for the embedder and head. Adding a component is one
file with one decorated class (see docs/adding_a_component.md).
"""

from __future__ import annotations

from typing import Callable

REGISTRIES: dict[str, dict[str, type]] = {"embedder": {}, "attention": {}, "ffn": {}, "norm": {}}


def register(kind: str, name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        REGISTRIES[kind][name] = cls
        return cls

    return deco


def lookup(kind: str, name: str) -> type:
    table = REGISTRIES[kind]
    if name not in table:
        raise ValueError(f"unknown {kind} '{name}'; valid choices: {', '.join(sorted(table))}")
    return table[name]
