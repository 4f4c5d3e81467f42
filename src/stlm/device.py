"""One device resolution for every command: "auto" is CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from stlm.errors import UserError


def resolve_device(name: str | None = "auto", option: str = "--device", fallback: bool = False) -> str:
    """`name` ("auto", "cpu", "cuda", "cuda:N") as a concrete device string. Asking for CUDA where
    there is none is a `UserError` naming `option`, or the CPU when `fallback` is set."""
    name = name or "auto"
    cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if cuda else "cpu"
    if name.startswith("cuda") and not cuda:
        if fallback:
            return "cpu"
        given = f"{option} {name}" if option.startswith("--") else f"{option}={name}"
        fix = f"{option} cpu" if option.startswith("--") else f"{option}=cpu"
        raise UserError(f"{given} but no CUDA device is available; use {fix}")
    return name
