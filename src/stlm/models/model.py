"""A language model is embedder -> core -> head, each chosen by `ModelConfig`.

The model is single-device and pure: distribution, compilation and mixed precision are the
trainer's business (`stlm.train.setup`). `forward` returns logits; the loss uses targets that the
data loader already shifted by one, and nothing here shifts them again (the SLlama code did).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import stlm.models.components  # noqa: F401  (registers the built-in components)
from stlm.config.schema import ModelConfig
from stlm.models.core import Block, TransformerCore
from stlm.models.head import LMHead
from stlm.models.kv_cache import KVCache
from stlm.models.registry import lookup
from stlm.models.sharing import build_layer_modules


class LanguageModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.embedder = lookup("embedder", cfg.embedder)(cfg, vocab_size)
        attns, ffns = build_layer_modules(cfg)
        self.core = TransformerCore(cfg, [Block(cfg, a, f) for a, f in zip(attns, ffns)])
        self.head = LMHead(cfg, vocab_size)
        self.reset_parameters()
        if cfg.tie_embeddings:
            self.tie_weights()

    def tie_weights(self) -> None:
        tied = getattr(self.embedder, "tie_weight", None)
        if tied is None or tied.shape != self.head.linear.weight.shape:
            raise ValueError(f"embedder '{self.cfg.embedder}' has no vocab x d_model matrix to tie "
                             "to the head; set model.tie_embeddings=false")
        self.head.linear.weight = tied

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, init_std) for matrices and embeddings; residual output projections get
        init_std / sqrt(2 * n_layers) (GPT-2); norms keep their ones. Seed torch first."""
        from stlm.models.components.attention import scaled_init_std

        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = scaled_init_std(self.cfg) if getattr(module, "is_residual_projection", False) \
                    else self.cfg.init_std
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, self.cfg.init_std)

    @property
    def n_layers(self) -> int:
        return len(self.core.blocks)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids (B, T); with a cache, ids continue the cached ones."""
        start = cache.length if cache is not None else 0
        if start + ids.shape[1] > self.cfg.context_length and self.cfg.positions != "rope":
            raise ValueError(f"sequence of {start + ids.shape[1]} tokens exceeds context "
                             f"{self.cfg.context_length}")
        x = self.embedder(ids, start)
        x = self.core(x, start=start, cache=cache)
        if cache is not None:
            cache.advance(ids.shape[1])
        return self.head(x)

    def loss(self, ids: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy; `targets[t]` is the token after `ids[t]` (already shifted)."""
        logits = self(ids)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=ignore_index)

    def new_cache(self) -> KVCache:
        return KVCache(self.n_layers)


def resolve_vocab_size(cfg: ModelConfig, tokenizer_vocab: int | None) -> int:
    """The embedding rows: the config's value, else the tokenizer's padded up to `pad_vocab_to`."""
    if cfg.vocab_size is not None:
        if tokenizer_vocab is not None and tokenizer_vocab > cfg.vocab_size:
            raise ValueError(f"model.vocab_size={cfg.vocab_size} is smaller than the tokenizer's "
                             f"vocabulary ({tokenizer_vocab}); set model.vocab_size=null to follow it")
        return cfg.vocab_size
    if tokenizer_vocab is None:
        raise ValueError("model.vocab_size is null and no tokenizer was given to size it")
    pad = max(1, cfg.pad_vocab_to)
    return (tokenizer_vocab + pad - 1) // pad * pad


def build_model(cfg: ModelConfig, tokenizer_vocab: int | None = None) -> LanguageModel:
    return LanguageModel(cfg, resolve_vocab_size(cfg, tokenizer_vocab))
