"""The built-in methods (importing this registers them, in this order) and lookup by name."""

from stlm.compress import pruning, structured, depth, quantize, lowrank  # noqa: F401  (this order)
from stlm.compress.registry import METHODS, Method
from stlm.errors import UserError


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown compression method '{name}'; valid methods: {', '.join(METHODS)}")
    return METHODS[name]
