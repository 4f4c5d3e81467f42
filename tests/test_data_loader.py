"""Loader: batches are a pure function of (seed, step, rank); ranks get disjoint windows; eval passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stlm.config.schema import DataConfig, SourceConfig, TokenizerConfig
from stlm.data.loader import TokenBatches, eval_batches
from stlm.data.prepare import prepare_data
from stlm.errors import UserError

B, T = 4, 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Random letters: every window of T tokens occurs once, so a window's content gives its offset."""
    folder = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    docs = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), size=int(rng.integers(20, 90))))
            for _ in range(400)]
    (folder / "c.txt").write_text("\n\n".join(d.strip() or "x" for d in docs))
    cfg = DataConfig(name="l", sources=[SourceConfig(name="text", path=str(folder / "c.txt"))],
                     tokenizer=TokenizerConfig(kind="byte"), num_proc=1, val_fraction=0.1,
                     shard_tokens=3000, cache_dir=str(folder / "cache"))
    return prepare_data(cfg, progress=False)


def starts_of(x: torch.Tensor, tokens: np.ndarray) -> list[int]:
    """The offset in the split of each row of x."""
    where = {tokens[s:s + T].tobytes(): s for s in range(len(tokens) - T)}
    assert len(where) == len(tokens) - T  # windows are unique
    return [where[row.astype(tokens.dtype).tobytes()] for row in x.numpy()]


@pytest.mark.parametrize("mode", ["random", "sequential"])
def test_batches_are_shifted_windows_and_identical_after_a_restart(data, mode):
    tokens = data.tokens("train")[:]
    assert len(data.meta["splits"]["train"]["shards"]) > 3  # windows cross shard boundaries
    first = TokenBatches(data, "train", B, T, seed=7, mode=mode)
    batches = [first.batch(step) for step in range(6)]
    restarted = TokenBatches(data, "train", B, T, seed=7, mode=mode)
    for step in (5, 2, 0):  # any order: no hidden state
        b = restarted.batch(step)
        assert torch.equal(b.ids, batches[step].ids) and torch.equal(b.targets, batches[step].targets)
    x, y = batches[3].ids, batches[3].targets
    assert batches[3].loss_mask is None and batches[3].extras == {}
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (B, T)
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y, s in zip(x.numpy(), y.numpy(), starts_of(x, tokens)):
        assert np.array_equal(row_y, tokens[s + 1:s + T + 1])
    if mode == "random":
        other = TokenBatches(data, "train", B, T, seed=8, mode=mode).batch(3)
        assert not torch.equal(other.ids, x)
    else:
        assert starts_of(batches[0].ids, tokens) == [i * T for i in range(B)]
        assert starts_of(batches[1].ids, tokens) == [(B + i) * T for i in range(B)]


def test_rank_streams_are_disjoint(data):
    tokens = data.tokens("train")[:]
    steps = (len(tokens) - 1) // T // (B * 3)  # one pass over the windows
    seen = []
    for rank in range(3):
        loader = TokenBatches(data, "train", B, T, seed=1, mode="sequential", rank=rank, world_size=3)
        starts = starts_of(torch.cat([loader.batch(step).ids for step in range(steps)]), tokens)
        assert len(set(starts)) == steps * B and all(s % T == 0 and s // T % 3 == rank for s in starts)
        seen.append(set(starts))
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    random = [TokenBatches(data, "train", B, T, seed=1, rank=r, world_size=2).batch(0).ids for r in range(2)]
    assert not torch.equal(random[0], random[1])


def test_eval_batches_pass_over_non_overlapping_windows(data):
    tokens = data.tokens("val")[:]
    n_windows = (len(tokens) - 1) // T
    batches = list(eval_batches(data, "val", 5, T))
    assert len(batches) == -(-n_windows // 5) and batches[-1].ids.shape[0] == n_windows - 5 * (len(batches) - 1)
    xs = torch.cat([b.ids for b in batches]).numpy().ravel()
    ys = torch.cat([b.targets for b in batches]).numpy().ravel()
    assert np.array_equal(xs, tokens[:n_windows * T]) and np.array_equal(ys, tokens[1:n_windows * T + 1])
    again = list(eval_batches(data, "val", 5, T, max_batches=2))
    assert len(again) == 2 and all(torch.equal(a.ids, b.ids) for a, b in zip(again, batches))


def test_a_split_too_small_for_the_context_is_clear(data):
    with pytest.raises(UserError, match=r"the val split has .* too few for 1 window\(s\) of context 100000"):
        TokenBatches(data, "val", B, 100_000, seed=0)
    with pytest.raises(UserError, match=r"context 100000"):
        next(eval_batches(data, "val", B, 100_000))
