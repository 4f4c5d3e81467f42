"""Registered batch transforms (`base`): pause insertion (`pauses`)."""

from stlm.data.transforms import pauses  # noqa: F401  (registers the built-in transforms)
from stlm.data.transforms.base import BATCH_TRANSFORMS, build_batch_transforms, with_transforms

__all__ = ["BATCH_TRANSFORMS", "build_batch_transforms", "with_transforms"]
