"""Text requests -> token requests, split exactly as lm-evaluation-harness's `TemplateLM` does.

For a (context, continuation) pair of strings:
- trailing whitespace of the context moves to the front of the continuation;
- the context and the whole string context + continuation are tokenized separately, and the
  continuation's tokens are the whole's tokens after the first len(context tokens); so a merge
  across the boundary is attributed to the continuation, as in the harness;
- an empty context becomes the prefix token (lm-eval's `prefix_token_id`: a chosen id, else the
  tokenizer's BOS, else end-of-text; `Tokenizer.prefix_id`), the continuation is tokenized alone
  (a continuation that itself starts with that token is scored after it instead, as in the
  harness; stlm's own tokenizers never emit special tokens from text).
Strings are tokenized once each (a context shared by four choices is encoded once).
"""

from __future__ import annotations

from typing import Sequence

from stlm.tokenizers.base import Tokenizer


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation (`TemplateLM._encode_pair`)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_requests(tokenizer: Tokenizer, pairs: Sequence[tuple[str, str]],
                    prefix_token_id: int | None = None) -> list[tuple[list[int], list[int]]]:
    """Token ids (context, continuation) for each text pair, as the harness computes them
    (`prefix_token_id`: the id an empty context becomes, default `tokenizer.prefix_id()`)."""
    prefix, _ = tokenizer.prefix_id(prefix_token_id)
    split = [split_pair(c, x) if c else (c, x) for c, x in pairs]
    texts = sorted({t for c, x in split for t in ((c, c + x) if c else (x,))})
    ids = {t: tokenizer.encode(t) for t in texts}  # one thread: a pool's start and spinning cost more here
    out = []
    for context, continuation in split:
        if not context:  # the harness's empty context: the prefix token alone, unless the
            cont = ids[continuation]  # continuation itself starts with it (`TemplateLM.loglikelihood`)
            out.append(([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:]))
            continue
        ctx = ids[context]
        out.append((ctx, ids[context + continuation][len(ctx):]))
    return out
