"""Sampling text from a model with its KV cache: temperature, top-k and nucleus (top-p; Holtzman
et al., 2019, arXiv 1904.09751) sampling.

The prompt follows an end-of-text token (where every training document starts) and is fed once
(a model trained with pause tokens gets its `pause_tokens` pauses after it);
each later step feeds only the newly sampled token and reuses the cached keys and values.
Text is decoded incrementally, so a character split across tokens is printed once it is
complete. Generation stops at end-of-text or after `max_new_tokens`. When the context window is
full, the cache is rebuilt from the most recent half of the window.
"""

from __future__ import annotations

import codecs
from typing import Callable

import torch
from torch import nn

from stlm.tokenizers.base import Tokenizer


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> int:
    """One token id from the logits (vocab,) of the last position; temperature 0 is greedy."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and 0 < top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the more likely ids
        sorted_probs[before >= top_p] = 0.0  # keep the smallest set reaching top_p (>= 1 id)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


@torch.no_grad()
def generate_ids(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 stop_id: int | None = None, use_cache: bool = True, window: int | None = None,
                 on_token: Callable[[int], None] | None = None,
                 tokenizer_bytes: Callable[[int], bytes] | None = None) -> list[int]:
    """Sample up to `max_new_tokens` ids after `prompt_ids`; returns the new ids (without stop_id).

    `window`: the most tokens the model sees (default: its context length; pass the length it
    was trained on when that is shorter). `use_cache=False` recomputes the whole window each step
    (the reference the cache must match). `tokenizer_bytes(id)`: the bytes of an id, for models
    that spell tokens byte by byte and keep the text valid UTF-8 (`model.sample_token`).
    """
    if not prompt_ids:
        raise ValueError("the prompt must have at least one token")
    device = next(model.parameters()).device
    window = min(window or model.cfg.context_length, model.cfg.context_length)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    # pause tokens (Goyal et al., 2023): a model trained with them gets K after the prompt
    pauses = getattr(model, "pause_tokens", 0)
    ids = list(prompt_ids) + ([model.pause_id] * pauses if pauses else [])
    out: list[int] = []
    cache, feed = None, ids
    by_token = getattr(model, "generates_by_token", False)  # a byte decoder spells each token
    sample = lambda logits: sample_next(logits, temperature, top_k, top_p, generator)  # noqa: E731
    try:
        for step in range(max_new_tokens):
            if use_cache:
                if cache is None:  # prefill with the prompt
                    cache, feed = model.new_cache(), ids[-window:]
                elif cache.length + 1 > window:  # window full: rebuild from its recent half
                    cache, feed = model.new_cache(), ids[-max(window // 2, 1):]
                x = torch.tensor([feed], device=device)
            else:
                cache, x = None, torch.tensor([ids[-window:]], device=device)
            if by_token:
                text_ids = [i for i in ids[-8:] if i >= 0]  # pauses spell nothing
                history = b"".join(tokenizer_bytes(i) for i in text_ids) if tokenizer_bytes else b""
                token = model.sample_token(model.encode(x, cache=cache)[0, -1], history, sample,
                                           final=step == max_new_tokens - 1)
            else:
                token = sample(model(x, cache=cache, logits="last").logits[0, -1])
            if token == stop_id:
                break
            ids.append(token)
            out.append(token)
            feed = [token]
            if on_token is not None:
                on_token(token)
    finally:
        model.train(was_training)
    return out


def generate(model: nn.Module, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 200, *,
             temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, stream: Callable[[str], None] | None = None,
             use_cache: bool = True, window: int | None = None) -> str:
    """The text the model writes after `prompt` (the prompt itself is not included).

    With `stream`, each decoded piece of text is passed to it as soon as it is complete UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []

    def emit(token: int) -> None:
        text = decoder.decode(tokenizer.token_bytes(token))
        if text:
            pieces.append(text)
            if stream is not None:
                stream(text)

    generate_ids(model, [tokenizer.eot_id] + tokenizer.encode(prompt), max_new_tokens,
                 temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                 stop_id=tokenizer.eot_id, use_cache=use_cache, window=window, on_token=emit,
                 tokenizer_bytes=tokenizer.token_bytes)
    tail = decoder.decode(b"", final=True)
    if tail:
        pieces.append(tail)
        if stream is not None:
            stream(tail)
    return "".join(pieces)
