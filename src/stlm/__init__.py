"""stlm: train and study super tiny language models."""

import os

# PyTorch's OpenMP threads spin while they wait; on a busy CPU (a laptop doing other work, a
# shared machine) that made CPU training up to 30x slower in our measurements, while passive
# waiting costs a few percent on an idle one. Read by OpenMP when torch loads, so it only takes
# effect when stlm is imported first (as the `stlm` command does); the user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
