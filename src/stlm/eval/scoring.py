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
  come from the requests sorted by tokens: a request joins its predecessor's cluster when that
  costs no more positions than running it apart (`_clusters_by_prefix`); clusters of similar
  prefix length fill one batch, which runs the shortest of their prefixes (`_prefix_chunks`);
- the vocabulary projection and softmax (the model's `target_logprobs`) run only where a
  continuation token is scored, once per distinct position and target, never over the context
  (with a 50k vocabulary the projection costs a 100M model nearly as much as its body), and on
  many forward calls' positions at once (`_HeadQueue`);
- remainders are sorted by length and batched with rows of similar length (`_similar_lengths`);
  padding goes on the right, where causal attention cannot see it;
- batches are cut by a cost model: a forward call's fixed cost (`_call_cost`, in positions: large
  for a tiny model, where many small calls cost more than padding, ~2 positions at d_model 768);
  where sharing saves less than its extra calls cost (a tiny model on BLiMP), the requests run
  whole, batched by length, as the harness runs them (`_cost` picks the cheaper plan).
Against lm-evaluation-harness's `hf` backend, which runs every request whole with all logits,
scoring measured 2.3x faster for a 100M model (MMLU 3.3x, ARC 2.9x, BLiMP 1.4x: every token of
it is scored) on a busy CPU (`benchmarks/eval_throughput.py`, docs/speed.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from stlm.models.kv_cache import KVCache

PAD_RATIO = 0.8  # rows whose length is at least this fraction of their batch's longest always join it
PREFIX_RATIO = 15 / 16  # likewise for the prefixes batched together (members redo what is cut)
CALL_OVERHEAD_FLOPS = 25e6  # a forward call's fixed cost per layer (its ~30 small ops) in FLOPs of work
WEIGHT_READ_POSITIONS = 16  # ... plus reading weights that exceed the caches, in positions (see _call_cost)
HEAD_ROWS = 1024  # scored positions queued before the head runs on them


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
                        context_length: int | None = None, pauses: int | None = None) -> list[Score]:
    """Score each (context, continuation) request with at most `context_length` inputs per forward
    pass (default: the model's context length; pass the trained one, `LoadedRun.context`).
    `pauses`: pause tokens inserted between each context and its continuation (Goyal et al., 2023;
    default: the model's `pause_tokens`, 0 for a model without them); the first continuation token
    is then predicted at the last pause, and pauses are never scored."""
    if device is None:
        device = next(model.parameters()).device
    if pauses is None:
        pauses = getattr(model, "pause_tokens", 0)
    if pauses:
        if not getattr(model, "pause_tokens", 0):
            raise ValueError("this model has no pause embedding (model.pause_tokens=0): score it without pauses")
        requests = [(tuple(ctx) + (model.pause_id,) * pauses, cont) for ctx, cont in requests]
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
    queue = _HeadQueue(model, len(seqs))
    was_training = model.training
    model.eval()
    try:
        call_cost = _call_cost(model)
        sharing = _prefix_chunks(*_clusters_by_prefix(seqs), batch_size, call_cost)
        plain = [(0, [[i] for i in range(len(seqs))])]  # whole sequences, batched by length
        plan = min(sharing, plain, key=lambda chunks: _cost(seqs, chunks, batch_size, call_cost))
        for prefix_len, chunk in plan:
            _score_chunk(model, seqs, prefix_len, chunk, batch_size, call_cost, torch.device(device), queue)
        queue.flush()
    finally:
        model.train(was_training)
    lp, miss = queue.logprob.tolist(), queue.misses.tolist()
    return [Score(sum(lp[i] for i in w), not any(miss[i] for i in w),
                  sum(len(seqs[i].inputs) - seqs[i].first for i in w), len(w)) for w in which]


def _call_cost(model) -> float:
    """A forward call's fixed cost in positions: `CALL_OVERHEAD_FLOPS` over the ~24 d_model^2
    FLOPs a position costs per layer (~64 positions for d_model 128, ~2 for 768), plus reading
    the weights once per call (a position costs 2 FLOPs per weight, reading it 4 bytes: ~16
    positions' time where memory is ~8x slower than arithmetic; measured on a 100M model)."""
    return CALL_OVERHEAD_FLOPS / (24 * model.cfg.d_model**2) + WEIGHT_READ_POSITIONS


def _clusters_by_prefix(seqs: list[_Seq]) -> tuple[list[list[int]], list[int]]:
    """Group sequences that start alike: (clusters of member indices, each one's shared length).

    Sequences are visited sorted by tokens. Each joins its predecessor's cluster when they share a
    token and the cluster's shared prefix P shrinks to no less than P (n - 1) / n (n: members so
    far): running the shorter prefix once then costs no more positions than running P once and
    the newcomer alone. A question's choices thus stay one cluster even when two of them begin
    with the same word, and items that share only a header stay apart."""
    clusters: list[list[int]] = []
    shared: list[int] = []
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
    return clusters, shared


def _prefix_chunks(clusters: list[list[int]], shared: list[int], batch_size: int, call_cost: float) -> list[tuple[int, list[list[int]]]]:
    """Clusters batched for their prefix runs, longest prefix first (memory errors show up early):
    [(prefix length run, clusters)]. A batch runs the shortest prefix among its clusters; a cluster
    joins the batch while the positions this moves into members' remainders, added up over the
    batch, cost less than a call, or its prefix is at least `PREFIX_RATIO` of the batch's longest."""
    chunks: list[tuple[int, list[list[int]]]] = []
    longest = members = recomputed = 0
    for c in sorted(range(len(clusters)), key=lambda c: -shared[c]):
        if chunks:
            length, chunk = chunks[-1]
            more = (length - shared[c]) * (members - len(chunk))  # prefix positions members redo
            if len(chunk) < batch_size and (recomputed + more <= call_cost or shared[c] >= PREFIX_RATIO * longest):
                chunk.append(clusters[c])
                chunks[-1] = (shared[c], chunk)
                members, recomputed = members + len(clusters[c]), recomputed + more
                continue
        chunks.append((shared[c], [clusters[c]]))
        longest, members, recomputed = shared[c], len(clusters[c]), 0
    return chunks


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _cost(seqs: list[_Seq], chunks: list[tuple[int, list[list[int]]]], batch_size: int, call_cost: float) -> float:
    """What running `chunks` costs, in positions (padding included) plus `call_cost` per call."""
    total = 0.0
    for p, clusters in chunks:
        if p > 0:
            total += p * len(clusters) + call_cost
        _, lengths = _tails(seqs, p, clusters)
        for batch in _similar_lengths(lengths, lengths, batch_size, call_cost):
            total += batch[0] * len(batch) + call_cost
    return total


def _tails(seqs: list[_Seq], p: int, clusters: list[list[int]]) -> tuple[list[tuple[int, int]], list[int]]:
    """The members that go on after the prefix, as (cluster, member), longest first, and the
    lengths they go on for."""
    tails = sorted(((g, m) for g, members in enumerate(clusters) for m in members if len(seqs[m].inputs) > p),
                   key=lambda gm: -len(seqs[gm[1]].inputs))
    return tails, [len(seqs[m].inputs) - p for _, m in tails]


def _score_chunk(model, seqs: list[_Seq], p: int, clusters: list[list[int]], batch_size: int,
                 call_cost: float, device: torch.device, queue: _HeadQueue) -> None:
    """Run the clusters' shared prefixes (length p; none when 0) as one batch, then every member's
    remainder on top of its prefix's cache; add each scored token's log-probability to its
    sequence's total."""
    cache = None
    if p > 0:
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
        queue.add(hidden, rows, targets, owners)

    tails, lengths = _tails(seqs, p, clusters)
    for batch in _similar_lengths(tails, lengths, batch_size, call_cost):
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
        sub = None if cache is None else _select(cache, torch.tensor([g for g, _ in batch], device=device))
        hidden = _hidden(model, inp.to(device), sub).flatten(0, 1)
        queue.add(hidden, rows, targets, owners)


def _similar_lengths(rows: list, lengths: list[int], batch_size: int, call_cost: float) -> list[list]:
    """`rows` (sorted by `lengths`, longest first) cut into batches of at most `batch_size` rows: a
    row joins the batch while the batch's padding stays under a call's cost, or its length is at
    least `PAD_RATIO` of the batch's first (cutting only every `batch_size` rows padded ARC's and
    MMLU's answers to twice their length)."""
    batches, start = [], 0
    while start < len(rows):
        end, padding = start + 1, 0
        while end < len(rows) and end - start < batch_size:
            gap = lengths[start] - lengths[end]
            if padding + gap > call_cost and lengths[end] < PAD_RATIO * lengths[start]:
                break
            padding, end = padding + gap, end + 1
        batches.append(rows[start:end])
        start = end
    return batches


def _hidden(model, ids: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """The final hidden states (B, T, d_model) of ids continuing the cache (advanced), if any."""
    return model.encode(ids, cache=cache)


def _select(cache: KVCache, index: torch.Tensor) -> KVCache:
    """A cache whose row i is row `index[i]` of `cache` (one prefix under several remainders)."""
    return cache.select(index)


class _HeadQueue:
    """Scored positions waiting for the head: their hidden states, targets and owners. The head
    (the vocabulary projection, as big as the whole body of a 100M model with GPT-2's vocabulary)
    runs once per `HEAD_ROWS` queued positions rather than once per forward call, so its weights
    are read from memory a few times per task, not once per call; log p(target) and whether it is
    the argmax are then added to each owner's totals."""

    def __init__(self, model, n_seqs: int):
        self.model = model
        self.logprob = torch.zeros(n_seqs, dtype=torch.float64)
        self.misses = torch.zeros(n_seqs, dtype=torch.long)  # scored tokens that were not the argmax
        self.hidden: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.owners: list[torch.Tensor] = []
        self.queued = 0

    def add(self, hidden: torch.Tensor, rows: list[int], targets: list[int], owners: list[int]) -> None:
        """Queue hidden[row] -> target for each owner; a (row, target) pair serving several owners
        (a prefix position shared by several sequences) is queued once."""
        if not rows:
            return
        pairs, where = torch.tensor(list(zip(rows, targets))).unique(dim=0, return_inverse=True)
        self.hidden.append(hidden[pairs[:, 0].to(hidden.device)])
        self.targets.append(pairs[:, 1])
        self.owners.append(torch.stack([torch.tensor(owners), where + self.queued]))
        self.queued += len(pairs)
        if self.queued >= HEAD_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.queued:
            return
        hidden = torch.cat(self.hidden)
        lp, hit = self.model.target_logprobs(hidden, torch.cat(self.targets).to(hidden.device))
        owners, where = torch.cat(self.owners, dim=1)
        self.logprob.index_add_(0, owners, lp.cpu().double()[where])
        self.misses.index_add_(0, owners, (~hit.cpu())[where].long())
        self.hidden, self.targets, self.owners, self.queued = [], [], [], 0
