"""Building blocks shared by every model variant (importing this registers them)."""

from stlm.models.components import attention, embedders, mlp, norms, sllama  # noqa: F401
