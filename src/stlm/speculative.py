"""Self-speculative decoding and confidence-based early exit (LayerSkip: Elhoushi et al., 2024,
arXiv 2404.16710), through the model's public early-exit calls.

Self-speculative greedy decoding drafts `draft_tokens` tokens with the first E layers (exit after
layer E through the shared head), then verifies them with layers E.. in one pass over the draft's
layer-E states: the draft's keys and values of layers < E are exactly the full model's, so they
are reused as they are. Drafts are accepted up to the first disagreement, where the full model's
own token is taken instead; the cache is cropped to the accepted tokens. Every emitted token is
the full model's greedy choice, so the output equals full greedy decoding token for token (up to
float rounding between a one-token and a several-token pass), at fewer full passes when the
early exit agrees often.

Confidence exit stops each token's forward pass at the first layer whose exit is confident
(largest probability >= threshold); the skipped layers keep no keys or values for that token, so
later tokens attend to fewer positions there (CALM, Schuster et al., 2022, copies states
instead; we do not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DecodeStats:
    tokens: int = 0  # tokens emitted
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens the full model agreed with
    verify_passes: int = 0  # passes through layers E.. (one per round)
    layers_run: int = 0  # blocks run, summed over tokens (confidence exit)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def _check(model: nn.Module, prompt_ids: list[int], exit_layer: int) -> torch.device:
    if not prompt_ids:
        raise ValueError("the prompt must have at least one token")
    if not 0 <= exit_layer <= model.n_layers:
        raise ValueError(f"exit_layer must be in [0, {model.n_layers}], got {exit_layer}")
    return next(model.parameters()).device


@torch.no_grad()
def self_speculative_greedy(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, exit_layer: int,
                            draft_tokens: int = 4, stop_id: int | None = None) -> tuple[list[int], DecodeStats]:
    """Greedy continuation of `prompt_ids` (up to `max_new_tokens`, stopping before `stop_id`),
    drafted by the first `exit_layer` blocks and verified by the rest."""
    device = _check(model, prompt_ids, exit_layer)
    if draft_tokens < 1:
        raise ValueError(f"draft_tokens must be >= 1, got {draft_tokens}")
    was_training = model.training
    model.eval()
    stats = DecodeStats()
    ids, out = list(prompt_ids), []
    cache = model.new_cache()
    try:
        if len(ids) > 1:  # invariant: every layer caches all committed tokens but the last
            model.encode(torch.tensor([ids[:-1]], device=device), cache=cache)
        while len(out) < max_new_tokens:
            n, k = len(ids), min(draft_tokens, max_new_tokens - len(out))
            states, drafts, feed = [], [], ids[-1]
            for _ in range(k):
                h = model.encode(torch.tensor([[feed]], device=device), cache=cache, exit_layer=exit_layer)
                states.append(h)
                feed = int(model.head_logits(h[:, -1]).argmax(-1))
                drafts.append(feed)
            positions = torch.arange(n - 1, n - 1 + k, device=device)
            final = model.continue_encode(torch.cat(states, dim=1), positions, from_layer=exit_layer, cache=cache)
            full = model.head_logits(final)[0].argmax(-1).tolist()
            m = 0
            while m < k and drafts[m] == full[m]:
                m += 1
            new = drafts[:m] + ([full[m]] if m < k else [])
            stats.drafted += k
            stats.accepted += m
            stats.verify_passes += 1
            cache.crop(n + len(new) - 1)
            for token in new:
                if token == stop_id:
                    stats.tokens = len(out)
                    return out, stats
                ids.append(token)
                out.append(token)
    finally:
        model.train(was_training)
    stats.tokens = len(out)
    return out, stats


@torch.no_grad()
def confidence_exit_greedy(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, threshold: float,
                           min_layer: int = 1, stop_id: int | None = None) -> tuple[list[int], DecodeStats]:
    """Greedy decoding where each token leaves the model at the first layer (>= min_layer) whose
    exit gives its top token probability >= `threshold` (1.0: never early, the full model)."""
    device = _check(model, prompt_ids, min_layer)
    was_training = model.training
    model.eval()
    stats = DecodeStats()
    out: list[int] = []
    cache = model.new_cache()
    try:
        h = model.encode(torch.tensor([prompt_ids], device=device), cache=cache)[:, -1:]
        logits = model.head_logits(h)[0, -1]
        while len(out) < max_new_tokens:
            token = int(logits.argmax())
            if token == stop_id:
                break
            out.append(token)
            position = torch.tensor([cache.length], device=device)
            h = model.encode(torch.tensor([[token]], device=device), cache=cache, exit_layer=min_layer)
            layer = min_layer
            logits = model.head_logits(h)[0, -1]
            while layer < model.n_layers and logits.float().softmax(-1).max() < threshold:
                h = model.continue_encode(h, position, from_layer=layer, to_layer=layer + 1, cache=cache)
                layer += 1
                logits = model.head_logits(h)[0, -1]
            stats.layers_run += layer
    finally:
        model.train(was_training)
    stats.tokens = len(out)
    return out, stats


@torch.no_grad()
def confidence_exit_logprobs(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, threshold: float,
                             min_layer: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced confidence exit over one sequence: each token of `ids` (T,) runs layer by
    layer from `min_layer` until its exit's top probability reaches `threshold` (as in
    `confidence_exit_greedy`; skipped layers keep no keys or values for it), and log p(target)
    (float32, `targets` (T,)) is read at the layer where it stopped. Returns the log-probabilities
    and the blocks run per token, so bits per byte and the compute spent can be measured."""
    device = _check(model, ids.tolist(), min_layer)
    was_training = model.training
    model.eval()
    logp = torch.empty(len(ids), dtype=torch.float32)
    layers = torch.empty(len(ids), dtype=torch.long)
    cache = model.new_cache()
    try:
        for t in range(len(ids)):
            position = torch.tensor([cache.length], device=device)
            h = model.encode(ids[t : t + 1].view(1, 1).to(device), cache=cache, exit_layer=min_layer)
            layer = min_layer
            logits = model.head_logits(h)[0, -1].float()
            while layer < model.n_layers and logits.softmax(-1).max() < threshold:
                h = model.continue_encode(h, position, from_layer=layer, to_layer=layer + 1, cache=cache)
                layer += 1
                logits = model.head_logits(h)[0, -1].float()
            logp[t] = logits.log_softmax(-1)[int(targets[t].clamp(min=0))]
            layers[t] = layer
    finally:
        model.train(was_training)
    return logp, layers
