"""Building blocks shared by every model variant (importing this registers them)."""

from stlm.models.components import (attention, embedders, heads, mlp, multi_token,  # noqa: F401
                                    norms, sllama)
