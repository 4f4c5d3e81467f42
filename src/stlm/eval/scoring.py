"""Log-likelihood of continuations given contexts, batched: the one scoring rule behind
minimal pairs, multiple-choice tasks and the lm-evaluation-harness adapter.

A request is (context ids, continuation ids). We sum the log-probabilities the model gives each
continuation token after the context, as lm-evaluation-harness does (`is_greedy`: every
continuation token is the model's argmax). The window is the context the model was trained at
(`LoadedRun.context`, i.e. `train.context_length`, which may be shorter than the model's
`context_length`): positions it never trained on are never scored. Inputs longer than the window
are cut from the left exactly as the harness cuts them (`(ctx + cont)[-(window + 1):]`), so the
continuation is kept whole.

A continuation longer than the window itself (lm-eval's `hf` backend refuses such a request) is
scored whole, in consecutive windows from its end backwards: each window holds `window` inputs
and scores the continuation tokens not scored by a later window, so every continuation token
counts (dropping its first tokens would make choices that differ only early tie). Such requests
report `windows > 1`; evaluation counts them per task (`long_continuations`).

What makes it fast, without changing any result beyond float rounding:
- identical requests are scored once;
- requests whose token sequences start alike share that prefix: it runs once, its keys and values
  are cached, and each request runs only its own remainder on top of the cache (the model's KV-cache
  decode path). The choices of a question share the question; a BLiMP pair shares the words before
  the two sentences differ; WinoGrande's two fillings share the text before the blank. Clusters
  come from the requests sorted by tokens, cut where neighbours share less than their other
  neighbours do; shared lengths are rounded down to 3 significant bits so that clusters of
  similar prefix length fill one batch;
- the vocabulary projection and softmax (the model's `target_logprobs`) run only where a
  continuation token is scored, once per distinct position and target, never over the context (with a 50k vocabulary the projection is most of a
  tiny model's work);
- remainders are sorted by length so batches pad little; padding goes on the right, where causal
  attention cannot see it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from stlm.models.kv_cache import KVCache

PREFIX_BITS = 4  # significant bits kept of a shared prefix length (see `_round_down`)
PAD_RATIO = 0.8  # a batch's rows are at least this fraction of its longest (see `_similar_lengths`)

@dataclass(frozen=True)
class Score:
    logprob: float  # summed log-probability of the continuation, in nats
    is_greedy: bool  # every continuation token was the model's argmax
    n_tokens: int
    windows: int = 1  # > 1: the continuation was longer than the window and scored in pieces


@dataclass(frozen=True)
class _Seq:
    """One distinct request after truncation: model inputs, the token each input position
    predicts, and the first position whose prediction is scored (a continuation token)."""

    inputs: tuple[int, ...]
    targets: tuple[int, ...]
    first: int


def _windows(ctx: Sequence[int], cont: Sequence[int], window: int) -> list[_Seq]:
    """The sequences that score `cont` after `ctx` with at most `window` inputs each: one when the
    continuation fits, else consecutive pieces of it, each after the `window` tokens before it."""
    full = tuple(ctx) + tuple(cont)
    first_scored = len(ctx)  # index in `full` of the first continuation token
    seqs, end = [], len(full)  # `end`: one past the last target still to score
    while end > first_scored:
        lo = max(0, end - 1 - window)  # inputs full[lo : end - 1] predict full[lo + 1 : end]
        start = max(first_scored, lo + 1)
        seqs.append(_Seq(full[lo : end - 1], full[lo + 1 : end], start - lo - 1))
        end = start
    return seqs


@torch.no_grad()
def score_continuations(model: torch.nn.Module, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                        batch_size: int = 64, device: torch.device | str | None = None,
                        context_length: int | None = None) -> list[Score]:
    """Score each (context, continuation) request with at most `context_length` inputs per forward
    pass (default: the model's context length; pass the trained one, `LoadedRun.context`)."""
    if device is None:
        device = next(model.parameters()).device
    window = min(context_length or model.cfg.context_length, model.cfg.context_length)
    index: dict[_Seq, int] = {}
    which = []
    for ctx, cont in requests:
        if len(cont) == 0:
            raise ValueError("a continuation must have at least one token")
        if len(ctx) == 0:
            raise ValueError("a context must have at least one token (use the end-of-text id)")
        which.append([index.setdefault(seq, len(index)) for seq in _windows(ctx, cont, window)])
    seqs = list(index)
    logprob = torch.zeros(len(seqs), dtype=torch.float64)
    misses = torch.zeros(len(seqs), dtype=torch.long)  # scored tokens that were not the argmax
    was_training = model.training
    model.eval()
    try:
        for prefix_len, clusters in _clusters_by_prefix_length(seqs).items():
            for start in range(0, len(clusters), batch_size):
                _score_chunk(model, seqs, prefix_len, clusters[start : start + batch_size], batch_size,
                             torch.device(device), logprob, misses)
    finally:
        model.train(was_training)
    lp, miss = logprob.tolist(), misses.tolist()
    return [Score(sum(lp[i] for i in w), not any(miss[i] for i in w),
                  sum(len(seqs[i].inputs) - seqs[i].first for i in w), len(w)) for w in which]


def _clusters_by_prefix_length(seqs: list[_Seq]) -> dict[int, list[list[int]]]:
    """Group sequences that start alike; {shared prefix length: [cluster member indices]}.

    Sequences are visited sorted by tokens. Each joins its predecessor's cluster when they share a
    token and the cluster's shared prefix P shrinks to no less than P (n - 1) / n (n: members so
    far): running the shorter prefix once then costs no more positions than running P once and
    the newcomer alone. A question's choices thus stay one cluster even when two of them begin
    with the same word, and items that share only a header stay apart."""
    clusters: list[list[int]] = []
    shared: list[int] = []  # each cluster's common prefix length
    previous: tuple[int, ...] = ()
    for i in sorted(range(len(seqs)), key=lambda i: seqs[i].inputs):
        inputs = seqs[i].inputs
        link = _common(previous, inputs)
        if clusters and link > 0 and min(shared[-1], link) * len(clusters[-1]) >= shared[-1] * (len(clusters[-1]) - 1):
            clusters[-1].append(i)
            shared[-1] = min(shared[-1], link)
        else:
            clusters.append([i])
            shared.append(len(inputs))
        previous = inputs
    out: dict[int, list[list[int]]] = defaultdict(list)
    for members, length in zip(clusters, shared):
        out[_round_down(length)].append(members)
    return dict(sorted(out.items(), reverse=True))  # longest first: memory errors show up early


def _round_down(n: int) -> int:
    """`n` with only its `PREFIX_BITS` highest bits kept (shares at most 1/16 less of a prefix):
    prefixes of nearly equal length then fill one batch, instead of many batches of a row or two."""
    drop = max(0, n.bit_length() - PREFIX_BITS)
    return n >> drop << drop


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _score_chunk(model, seqs: list[_Seq], p: int, clusters: list[list[int]], batch_size: int,
                 device: torch.device, logprob: torch.Tensor, misses: torch.Tensor) -> None:
    """Run the clusters' shared prefixes (length p) as one batch, then every member's remainder on
    top of its prefix's cache; add each scored token's log-probability to its sequence's total."""
    cache = model.new_cache()
    prefix = torch.tensor([seqs[c[0]].inputs[:p] for c in clusters], dtype=torch.long, device=device)
    hidden = _hidden(model, prefix, cache).flatten(0, 1)  # row g * p + j: cluster g, position j
    rows, targets, owners = [], [], []
    for g, members in enumerate(clusters):
        for m in members:
            s = seqs[m]
            for j in range(s.first, p):
                rows.append(g * p + j)
                targets.append(s.targets[j])
                owners.append(m)
    _add_scores(model, hidden, rows, targets, owners, logprob, misses)

    tails = sorted(((g, m) for g, members in enumerate(clusters) for m in members if len(seqs[m].inputs) > p),
                   key=lambda gm: -len(seqs[gm[1]].inputs))
    for batch in _similar_lengths(tails, [len(seqs[m].inputs) - p for _, m in tails], batch_size):
        width = len(seqs[batch[0][1]].inputs) - p
        inp = torch.zeros(len(batch), width, dtype=torch.long)
        rows, targets, owners = [], [], []
        for r, (_, m) in enumerate(batch):
            s = seqs[m]
            inp[r, : len(s.inputs) - p] = torch.tensor(s.inputs[p:])
            for j in range(max(s.first, p), len(s.inputs)):
                rows.append(r * width + j - p)
                targets.append(s.targets[j])
                owners.append(m)
        sub = _select(cache, torch.tensor([g for g, _ in batch], device=device))
        hidden = _hidden(model, inp.to(device), sub).flatten(0, 1)
        _add_scores(model, hidden, rows, targets, owners, logprob, misses)


def _similar_lengths(rows: list, lengths: list[int], batch_size: int) -> list[list]:
    """`rows` (sorted by `lengths`, longest first) cut into batches of at most `batch_size` rows
    whose lengths are all at least `PAD_RATIO` of the batch's first: padding stays under a fifth
    of a batch (cutting only every `batch_size` rows padded ARC's and MMLU's answers to twice
    their length)."""
    batches, start = [], 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and end - start < batch_size and lengths[end] >= PAD_RATIO * lengths[start]:
            end += 1
        batches.append(rows[start:end])
        start = end
    return batches


def _hidden(model, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """The final hidden states (B, T, d_model) of ids continuing the cache (advanced)."""
    return model.encode(ids, cache=cache)


def _select(cache: KVCache, index: torch.Tensor) -> KVCache:
    """A cache whose row i is row `index[i]` of `cache` (one prefix under several remainders)."""
    return cache.select(index)


def _add_scores(model, hidden: torch.Tensor, rows: list[int], targets: list[int], owners: list[int],
                logprob: torch.Tensor, misses: torch.Tensor) -> None:
    """log p(target | hidden[row]) and whether it is the argmax, added to each owner's totals. The
    head runs once per distinct (row, target) (a prefix position can serve several sequences)."""
    if not rows:
        return
    pairs, where = torch.tensor(list(zip(rows, targets))).unique(dim=0, return_inverse=True)
    lp, hit = model.target_logprobs(hidden[pairs[:, 0].to(hidden.device)], pairs[:, 1].to(hidden.device))
    owners_t = torch.tensor(owners)
    logprob.index_add_(0, owners_t, lp.cpu().double()[where])
    misses.index_add_(0, owners_t, (~hit.cpu())[where].long())
