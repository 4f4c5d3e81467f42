"""A language model is embedder -> core -> head, each chosen by `ModelConfig` from the registry.

The model is single-device and pure: distribution, compilation and mixed precision are the
trainer's business (`stlm.train.setup`). Its public calls are the whole contract the rest of stlm
uses (nothing outside `stlm.models` touches the embedder, core or head):

- `forward(ids, targets=None, ...) -> ModelOutput`: logits over the vocabulary, and with targets
  the training loss, the next-token loss and named auxiliary losses; per-layer hidden states on
  request. `logits_are_logprobs`: the byte decoder's logits are log p(id) already, summing to at
  most 1 (the rest is spellings that are no id), and are not computed in training.
- `encode(ids, cache=...)`: the final hidden states (a KV cache continues earlier ids), and
  `target_logprobs(hidden, targets)`: log p(target) and whether it is the argmax. Together they
  are `logprobs(ids, targets)`, the one scoring call behind bits per byte, zero-shot tasks and the
  lm-eval adapter.
- `new_cache()` for incremental decoding.
- Pause tokens: `pause_tokens` (K appended at inference) and `pause_id`, the input id of a pause.
- Early exit (LayerSkip): `encode(..., exit_layer=E)` runs the first E blocks only,
  `continue_encode(hidden, positions, from_layer=E)` runs the rest on those states, and
  `head_logits(hidden)` applies the shared head to any layer's states.

Targets are already shifted by the data loader (`targets[t]` follows `ids[t]`); nothing here
shifts them again (the SLlama code did).
"""

from __future__ import annotations

import torch
from torch import nn

import stlm.models.components  # noqa: F401  (registers the built-in components)
from stlm.config.schema import ModelConfig
from stlm.models.components.mixture_of_depths import build_blocks
from stlm.models.components.pause import PAUSE_ID, PauseEmbedding
from stlm.models.core import TransformerCore
from stlm.models.kv_cache import KVCache
from stlm.models.output import ModelOutput
from stlm.models.registry import lookup
from stlm.models.sharing import build_layer_modules

LOGITS = ("all", "last", "none")


class LanguageModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.embedder = lookup("embedder", cfg.embedder)(cfg, vocab_size)
        attns, ffns = build_layer_modules(cfg)
        self.core = TransformerCore(cfg, build_blocks(cfg, attns, ffns))
        self.head = lookup("head", cfg.head)(cfg, vocab_size)
        self.reset_parameters()
        # built last, so the other parameters start as they would without pauses
        self.pause = PauseEmbedding(cfg) if cfg.pause_tokens > 0 else None
        if cfg.tie_embeddings:
            self.tie_weights()

    def tie_weights(self) -> None:
        tied = getattr(self.embedder, "tie_weight", None)
        target = getattr(self.head, "tie_target", None)
        if tied is None or target is None or tied.shape != target.weight.shape:
            raise ValueError(f"embedder '{self.cfg.embedder}' and head '{self.cfg.head}' have no "
                             "vocab x d_model matrices to tie; set model.tie_embeddings=false")
        target.weight = tied

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

    def attach_tokenizer(self, tokenizer) -> None:
        """Give components that read token bytes (the byte embedder and decoder) the tokenizer's
        id -> bytes table; `build_model` does this when given a tokenizer."""
        for module in self.modules():
            if module is not self and hasattr(module, "attach"):
                module.attach(tokenizer)

    def set_training_progress(self, step: int, progress: float) -> None:
        """Tell components whose training depends on where training is (the early-exit
        curriculum) the 0-based optimizer step about to run and the fraction of the planned run
        done; the trainer calls this before every step."""
        for module in self.modules():
            if module is not self and hasattr(module, "set_training_progress"):
                module.set_training_progress(step, progress)

    @property
    def logits_are_logprobs(self) -> bool:
        """Whether the logits are already log-probabilities of the ids, summing to at most 1 (the
        byte decoder: the rest is byte spellings that are no id), instead of scores to softmax."""
        return getattr(self.head, "LOGITS_ARE_LOGPROBS", False)

    @property
    def logits_in_training(self) -> bool:
        """Whether `forward` with targets returns logits too (the byte decoder's cost one decoder
        pass per id and position, so it returns the loss only)."""
        return getattr(self.head, "LOGITS_IN_TRAINING", True)

    @property
    def generates_by_token(self) -> bool:
        """Whether the head picks the next id itself (`sample_token`) instead of by its logits."""
        return hasattr(self.head, "sample_token")

    def sample_token(self, hidden: torch.Tensor, history: bytes, sample, final: bool = False) -> int:
        """The next id chosen by the head from the last hidden state (d_model,): the byte decoder
        spells a chunk byte by byte, each symbol drawn by `sample(logits) -> index`, so that the
        text (`history` is its bytes so far) stays valid UTF-8; `final`: the last step."""
        return self.head.sample_token(hidden, history, sample, final)

    @property
    def pause_tokens(self) -> int:
        """Pauses (Goyal et al., 2023) appended after a prompt and before each scored continuation:
        `model.pause_tokens`, 0 for a model without a pause embedding."""
        return self.cfg.pause_tokens if self.pause is not None else 0

    @property
    def pause_id(self) -> int:
        """The input id of a pause (never a tokenizer id; the head does not predict it)."""
        return PAUSE_ID

    @property
    def n_layers(self) -> int:
        return len(self.core.blocks)

    def new_cache(self) -> KVCache:
        return KVCache(self.n_layers)

    # -----------------------------------------------------------------------------------------

    def _positions(self, length: int, cache: KVCache | None, positions: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        if positions is None:
            if start + length > self.cfg.context_length and self.cfg.positions != "rope":
                raise ValueError(f"sequence of {start + length} tokens exceeds context "
                                 f"{self.cfg.context_length}; absolute positions cannot extrapolate")
            return torch.arange(start, start + length, device=device)
        if positions.shape != (length,):
            raise ValueError(f"positions must have shape ({length},), got {tuple(positions.shape)}")
        return positions.to(device)

    def _run(self, ids: torch.Tensor, cache: KVCache | None, positions: torch.Tensor | None,
             keep_states: bool, exit_layer: int | None = None, aux: dict | None = None
             ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        pos = self._positions(ids.shape[1], cache, positions, ids.device)
        x = self.embedder(ids, pos) if self.pause is None else self.pause(ids, pos, self.embedder)
        h, states = self.core(x, pos, cache=cache, keep_states=keep_states, stop=exit_layer, aux=aux)
        if cache is not None:
            cache.advance(ids.shape[1])
        return h, states

    def encode(self, ids: torch.Tensor, *, cache: KVCache | None = None,
               positions: torch.Tensor | None = None, exit_layer: int | None = None) -> torch.Tensor:
        """Final hidden states (B, T, d_model) for ids (B, T); with a cache, ids continue the
        cached ones (and the cache is advanced). `exit_layer=E`: the states after the first E
        blocks (blocks E.. keep no keys and values for these ids)."""
        if exit_layer is not None and not 0 <= exit_layer <= self.n_layers:
            raise ValueError(f"exit_layer must be in [0, {self.n_layers}], got {exit_layer}")
        return self._run(ids, cache, positions, keep_states=False, exit_layer=exit_layer)[0]

    def continue_encode(self, hidden: torch.Tensor, positions: torch.Tensor, *, from_layer: int,
                        to_layer: int | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """Run blocks [from_layer, to_layer) on `hidden`, the states after block from_layer - 1
        of the tokens at `positions` (T,); the cache's position count is not advanced again."""
        return self.core(hidden, positions.to(hidden.device), cache=cache, start=from_layer, stop=to_layer)[0]

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits from hidden states of any layer (the head is shared by every exit)."""
        return self.head(hidden)

    def target_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For hidden states (N, d_model) from `encode` and targets (N,): log p(target) in float32
        and whether the target is the argmax."""
        return self.head.target_logprobs(hidden, targets)

    def logprobs(self, ids: torch.Tensor, targets: torch.Tensor, *, cache: KVCache | None = None,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(targets[b, t] | ids[b, :t+1]) (B, T) in float32, and whether each target is the
        argmax. Targets below 0 (padding) get an arbitrary value: mask them out."""
        h = self.encode(ids, cache=cache, positions=positions)
        logp, greedy = self.target_logprobs(h.reshape(-1, h.shape[-1]), targets.reshape(-1))
        return logp.view(targets.shape), greedy.view(targets.shape)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, *,
                loss_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                positions: torch.Tensor | None = None, output_hidden_states: bool = False,
                logits: str = "all") -> ModelOutput:
        """Run the model on ids (B, T). With `targets` (B, T), the output carries the loss (and the
        logits, unless the head computes none in training: the byte decoder). `logits`: "all"
        positions, only the "last" (decoding) or "none" (when not training)."""
        if logits not in LOGITS:
            raise ValueError(f"logits must be one of {LOGITS}, got {logits!r}")
        wants_states = targets is not None and getattr(self.head, "wants_hidden_states", False)
        core_aux: dict[str, tuple[torch.Tensor, float]] = {}  # routed blocks' losses (mixture-of-depths)
        h, states = self._run(ids, cache, positions, keep_states=output_hidden_states or wants_states,
                              aux=core_aux)
        out = ModelOutput(hidden_states=states if output_hidden_states else None)
        if targets is not None:
            out.logits = self.head(h) if self.logits_in_training else None
            extra = {"hidden_states": states} if wants_states else {}
            head_loss = self.head.loss(h, targets, loss_mask, logits=out.logits, **extra)
            for name, (value, weight) in core_aux.items():
                head_loss.aux_losses[name], head_loss.aux_weights[name] = value, weight
            out.loss, out.lm_loss, out.aux_losses = head_loss.total(), head_loss.lm_loss, head_loss.aux_losses
        elif logits == "all":
            out.logits = self.head(h)
        elif logits == "last":
            out.logits = self.head(h[:, -1:])
        return out


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


def build_model(cfg: ModelConfig, tokenizer_vocab=None) -> LanguageModel:
    """The model `cfg` describes; `tokenizer_vocab` is the tokenizer's vocabulary size, or the
    tokenizer itself (byte-level components then read its token bytes)."""
    vocab = getattr(tokenizer_vocab, "vocab_size", tokenizer_vocab)
    model = LanguageModel(cfg, resolve_vocab_size(cfg, vocab))
    if hasattr(tokenizer_vocab, "token_table"):
        model.attach_tokenizer(tokenizer_vocab)
    return model
