"""Building blocks shared by every model variant (importing this registers them)."""

from stlm.models.components import (attention, early_exit, embedders, heads, mlp,  # noqa: F401
                                    multi_token, norms, sllama)
