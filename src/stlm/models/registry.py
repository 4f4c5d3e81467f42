"""Name -> class registries for model components, filled by `@register(kind, name)`.

A component class takes `(cfg: ModelConfig, layer_idx: int)` for per-layer parts (attention, ffn)
or `(cfg: ModelConfig, vocab_size: int)` for the embedder and head. Adding a component is one
file with one decorated class (see docs/architecture.md#adding-a-component).

Registering also tells parameter accounting (`stlm.models.params`) which category a component's
parameters belong to (`param_category`, from its kind unless the class sets its own), so a new
component is counted right without editing the accounting code.
"""

from __future__ import annotations

from typing import Callable

REGISTRIES: dict[str, dict[str, type]] = {"embedder": {}, "attention": {}, "ffn": {}, "norm": {},
                                          "head": {}}
# The accounting category of each kind's parameters.
CATEGORY_OF_KIND = {"embedder": "embedding", "attention": "attention", "ffn": "mlp", "norm": "norms",
                    "head": "head"}


def register(kind: str, name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        REGISTRIES[kind][name] = cls
        if "param_category" not in cls.__dict__:
            cls.param_category = CATEGORY_OF_KIND[kind]
        cls.component_kind = kind
        return cls

    return deco


def lookup(kind: str, name: str) -> type:
    table = REGISTRIES[kind]
    if name not in table:
        raise ValueError(f"unknown {kind} '{name}'; valid choices: {', '.join(sorted(table))}")
    return table[name]
