"""stlm: train and study super tiny language models."""

from stlm._threads import choose_wait_policy

# OpenMP threads spin (fast on an idle machine) or sleep (robust on a busy one); chosen from the
# machine's load before torch loads, which is why it happens at import (see stlm._threads).
choose_wait_policy()

__version__ = "0.1.0"
