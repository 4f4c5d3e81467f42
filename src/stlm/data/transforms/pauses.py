"""Pause tokens inserted into training batches (Goyal et al., 2023, arXiv 2310.02226, section 3:
pretraining with pauses at uniformly random positions, the sequence truncated back to its length).

Each row gets round(`model.pause_fraction` * T) pauses, each after a uniformly drawn position
(several may land together, giving runs of pauses). A position followed by k pauses becomes
k + 1 positions: the token (its target, the first pause, is not scored), k - 1 pauses predicting
pauses (not scored), and the last pause, which predicts the token's original target (scored as it
was). The row is cut back to T positions. So the loss never asks for a pause, every real target
keeps its loss-mask value, and bits per byte stays honest: unscored positions carry no bytes.
"""

from __future__ import annotations

import numpy as np
import torch

from stlm.batch import IGNORE_INDEX, Batch
from stlm.data.transforms.base import batch_transform
from stlm.models.components.pause import PAUSE_ID


def insert_pauses(batch: Batch, fraction: float, rng: np.random.Generator, keep_length: bool = True) -> Batch:
    """`batch` with round(fraction * T) pauses inserted per row at random places, cut to T
    (`keep_length=False`: not cut, every row T + round(fraction * T) long, so every target of the
    batch is still scored, as an evaluation over the same text needs)."""
    if batch.extras:
        raise ValueError(f"pause insertion cannot shift the batch extras {sorted(batch.extras)}; "
                         "train pauses with a model whose batches carry ids and targets only")
    rows, length = batch.ids.shape
    n = round(fraction * length)
    mask = (torch.ones_like(batch.ids, dtype=torch.bool) if batch.loss_mask is None else batch.loss_mask).tolist()
    in_ids, in_targets = batch.ids.tolist(), batch.targets.tolist()
    ids, targets, keep = [], [], []
    for r in range(rows):
        runs = np.bincount(rng.integers(0, length, size=n), minlength=length) if n else np.zeros(length, int)
        i, t, m = [], [], []
        for pos in range(length):
            k = int(runs[pos])
            i += [in_ids[r][pos]] + [PAUSE_ID] * k
            t += [IGNORE_INDEX] * k + [in_targets[r][pos]]
            m += [False] * k + [mask[r][pos]]
            if keep_length and len(i) >= length:
                break
        cut = length if keep_length else len(i)
        ids.append(i[:cut])
        targets.append(t[:cut])
        keep.append(m[:cut])
    return Batch(torch.tensor(ids, dtype=batch.ids.dtype), torch.tensor(targets, dtype=batch.targets.dtype),
                 torch.tensor(keep, dtype=torch.bool))


@batch_transform("pauses")
def build_pause_insertion(cfg):
    """Pauses for a model with a pause embedding (`model.pause_tokens` > 0) and a nonzero
    `model.pause_fraction`."""
    fraction = cfg.model.pause_fraction
    if cfg.model.pause_tokens <= 0 or fraction <= 0:
        return None
    return lambda batch, rng: insert_pauses(batch, fraction, rng)
