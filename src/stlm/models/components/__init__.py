"""Building blocks shared by every model variant (importing this registers them)."""

from stlm.models.components import (attention, byte_decoder, byte_embedder,  # noqa: F401
                                    early_exit, embedders, heads, mlp, multi_token, norms, sllama)
