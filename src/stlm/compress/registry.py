"""Compression methods by name: `@register("svd", ...)` on a function that compresses a loaded
model in place. Adding a method is one file with one decorated function, imported from
`stlm.compress.methods` (see docs/compression.md).

A method receives a `Context` (the model, a copy of the run config to record its structure in,
the tokenizer, calibration batches and its own options) and returns the settings to record in
the new run's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from stlm.config.schema import RunConfig
from stlm.errors import UserError

# Every method option: (type, default, help). A method lists the ones it reads.
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "sparsity": (float, 0.5, "magnitude: fraction of weights set to zero, in [0, 1)"),
    "scope": (str, "global", "magnitude: rank weights across all matrices (global) or within each (layer)"),
    "n": (int, 2, "nm: weights kept in each group of m along the input dimension"),
    "m": (int, 4, "nm: group size along the input dimension"),
    "fraction": (float, 0.25, "heads/neurons: fraction of each layer's heads (key/value groups) or "
                              "FFN neurons removed, in (0, 1)"),
    "layers": (int, 1, "drop-layers: number of blocks removed"),
    "group_size": (int, 32, "int4: input columns sharing one scale (even)"),
    "rank": (int, None, "svd: rank of every factorised matrix"),
    "energy": (float, None, "svd: smallest rank keeping this fraction of each matrix's squared singular "
                            "values, in (0, 1]; matrices where that saves nothing stay dense"),
}
# What each option accepts, checked before any run is loaded: (test, what it must be).
VALID: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sparsity": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "scope": (lambda v: v in ("global", "layer"), "global or layer"),
    "n": (lambda v: v >= 1, ">= 1"),
    "m": (lambda v: v >= 2, ">= 2"),
    "fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "layers": (lambda v: v >= 1, ">= 1"),
    "group_size": (lambda v: v >= 2 and v % 2 == 0, "an even number >= 2"),
    "rank": (lambda v: v >= 1, ">= 1"),
    "energy": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


@dataclass
class Context:
    """What a method works on. It changes `model` in place and describes any change of shape in
    `cfg.model` (its `compression` section, or `n_layers`), so the result rebuilds from config."""

    model: nn.Module
    cfg: RunConfig
    tokenizer: Any
    options: dict[str, Any]
    calibration: Callable[[], Iterator[torch.Tensor]]  # batches of token ids (B, T)
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    apply: Callable[[Context], dict]
    options: tuple[str, ...] = ()
    trainable: bool = True  # recovery fine-tuning can follow it
    keeps_zeros: bool = False  # fine-tuning must keep its zeros (unstructured pruning)
    calibrates: bool = False  # runs calibration text through the model


METHODS: dict[str, Method] = {}


def register(name: str, summary: str, options: tuple[str, ...] = (), *, trainable: bool = True,
             keeps_zeros: bool = False, calibrates: bool = False) -> Callable:
    def deco(fn: Callable[[Context], dict]) -> Callable[[Context], dict]:
        METHODS[name] = Method(name, summary, fn, options, trainable, keeps_zeros, calibrates)
        return fn

    return deco


def method_options(method: Method, given: dict[str, Any]) -> dict[str, Any]:
    """The method's options: the given values over the defaults; an option the method does not
    read is refused rather than silently ignored."""
    foreign = sorted(k for k, v in given.items() if v is not None and k not in method.options)
    if foreign:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in foreign)
        mine = ", ".join(f"--{k.replace('_', '-')}" for k in method.options) or "none"
        raise UserError(f"{flags} does not apply to --method {method.name} (its options: {mine})")
    options = {k: given[k] if given.get(k) is not None else OPTIONS[k][1] for k in method.options}
    for k, v in options.items():
        if v is not None and not VALID[k][0](v):
            raise UserError(f"--{k.replace('_', '-')} must be {VALID[k][1]}, got {v}")
    return options
