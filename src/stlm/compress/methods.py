"""The built-in methods (importing this registers them, in this order)."""

from stlm.compress import pruning, structured, depth, quantize, lowrank  # noqa: F401
