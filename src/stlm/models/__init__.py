"""Models composed as embedder -> core -> head."""

from stlm.models.dropout import dropout_rates, set_dropout
from stlm.models.kv_cache import KVCache
from stlm.models.model import LanguageModel, build_model, resolve_vocab_size

__all__ = ["KVCache", "LanguageModel", "build_model", "dropout_rates", "resolve_vocab_size", "set_dropout"]
