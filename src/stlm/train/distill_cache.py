"""A disk cache of a teacher's top-k next-token log-probs (`train.distill.cache=FOLDER`), so runs
that distil from the same teacher on the same data skip the teacher's forward passes.

What is stored: for every training window the run will draw, the teacher's k most likely ids at
each position and their log-probabilities at temperature 1 (stlm.train.distill.teacher_topk), so
the temperature can change between runs. Windows are keyed by their token offset in the prepared
train split, not by step: with `data.sampling=sequential` the windows are fixed by the context
length alone, so a cache built for one batch size serves any other (and any number of ranks);
with `random` sampling the offsets follow (seed, step, rank, batch size), and a run that draws an
offset the cache lacks stops with an error that names the layout the cache was built for.

The folder holds `shard-NNNNN.safetensors` files (`starts` int64 (n,), `logprobs` (n, T, k),
`ids` int32 (n, T, k)) and `manifest.json`: the teacher (path and sha256 of its files, stlm.train.
teacher), the data (prepared-data key, tokenizer fingerprint, sha256 of the cached windows' tokens),
context, k, dtype, the batch layout, and each shard's sha256. It is written under a temporary
name and renamed when complete, so an interrupted build leaves nothing a later run would read; a
cache that does not match the run, or whose files changed, is refused.

The whole cache is read into memory: windows x T x k x (4 + 4) bytes for float32.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stlm.errors import UserError
from stlm.fileio import atomic_folder
from stlm.train.checkpoint import sha256_file
from stlm.train.distill import teacher_topk
from stlm.train.teacher import teacher_identity

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SHARD_BYTES = 256 * 1024 * 1024


def planned_starts(source, n_batches: int, world_size: int) -> np.ndarray:
    """Sorted token offsets of every window that batches 0..n_batches-1 of all ranks draw."""
    starts = [source.starts(i, rank) for i in range(n_batches) for rank in range(world_size)]
    return np.unique(np.concatenate(starts)).astype(np.int64)


def _window_tokens(tokens, starts: np.ndarray, context: int) -> np.ndarray:
    return np.stack([tokens[s:s + context] for s in starts.tolist()]).astype(np.int64)


def windows_digest(tokens, starts: np.ndarray, context: int, chunk: int = 4096) -> str:
    """sha256 of the offsets and input tokens of the windows at `starts`."""
    h = hashlib.sha256(starts.astype("<i8").tobytes())
    for i in range(0, len(starts), chunk):
        h.update(_window_tokens(tokens, starts[i:i + chunk], context).astype("<i8").tobytes())
    return h.hexdigest()


def expected_manifest(teacher: str, data, context: int) -> dict:
    """The fields of a manifest that must equal this run's."""
    return {"format": FORMAT_VERSION, "teacher_sha256": teacher_identity(teacher), "data_key": data.meta["key"],
            "tokenizer": data.tokenizer.fingerprint(), "context": context}


def build_cache(out: str | Path, teacher_model: torch.nn.Module, teacher: str, data, starts: np.ndarray,
                context: int, top_k: int, layout: dict, device: torch.device, batch_size: int = 32,
                dtype: str = "float32", autocast: Callable | None = None, echo: Callable[[str], None] = print) -> Path:
    """Run the teacher over the windows at `starts` and write the cache folder `out` atomically."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists():
        raise UserError(f"{out} exists; a teacher cache is written to a new folder")
    tokens = data.tokens("train")
    per_shard = max(1, SHARD_BYTES // (context * top_k * 8))
    manifest = {**expected_manifest(teacher, data, context), "teacher": str(teacher), "top_k": top_k,
                "dtype": dtype, "windows": len(starts), "windows_sha256": windows_digest(tokens, starts, context),
                "layout": layout, "shards": []}
    echo(f"teacher cache: top-{top_k} log-probs of {len(starts):,} windows of {context} tokens -> {out}")
    with atomic_folder(out) as tmp:
        for n, first in enumerate(range(0, len(starts), per_shard)):
            part = starts[first:first + per_shard]
            logprobs, ids = [], []
            for i in range(0, len(part), batch_size):
                x = torch.from_numpy(_window_tokens(tokens, part[i:i + batch_size], context)).to(device)
                with torch.no_grad(), (autocast() if autocast else torch.autocast("cpu", enabled=False)):
                    values, index = teacher_topk(teacher_model(x).logits, top_k)
                logprobs.append(values.to(DTYPES[dtype]).cpu())
                ids.append(index.to(torch.int32).cpu())
            name = f"shard-{n:05d}.safetensors"
            save_file({"starts": torch.from_numpy(part), "logprobs": torch.cat(logprobs), "ids": torch.cat(ids)},
                      str(tmp / name))
            manifest["shards"].append({"file": name, "windows": len(part), "sha256": sha256_file(tmp / name)})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


class TopkCache:
    """A verified teacher cache in memory: `lookup(starts)` gives the (logprobs, ids) rows."""

    def __init__(self, path: str | Path, teacher: str, data, context: int, top_k: int):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        self.path = Path(path)
        manifest = self._manifest()
        want = expected_manifest(teacher, data, context)
        wrong = [f"{key} {manifest.get(key)!r} (this run: {value!r})" for key, value in want.items()
                 if manifest.get(key) != value]
        if wrong:
            raise UserError(f"the teacher cache {self.path} was built for another teacher, data or context: "
                            f"{'; '.join(wrong)}; point train.distill.cache at a new folder to build one")
        if top_k > manifest["top_k"]:
            raise UserError(f"the teacher cache {self.path} holds the top {manifest['top_k']} ids, fewer than "
                            f"train.distill.top_k={top_k}; lower top_k or build a new cache")
        self.manifest, self.top_k = manifest, top_k
        parts = []
        for shard in manifest["shards"]:
            file = self.path / shard["file"]
            if not file.is_file() or sha256_file(file) != shard["sha256"]:
                raise UserError(f"the teacher cache {self.path} is corrupt: {file.name} is missing or changed; "
                                "delete the folder to build it again")
            try:
                parts.append(load_file(str(file)))
            except (SafetensorError, OSError) as exc:
                raise UserError(f"the teacher cache {self.path} is corrupt: {file.name}: {exc}") from exc
        self.starts = np.concatenate([p["starts"].numpy() for p in parts])
        self.logprobs = torch.cat([p["logprobs"][..., :top_k] for p in parts]).float()
        self.ids = torch.cat([p["ids"][..., :top_k] for p in parts]).long()
        if windows_digest(data.tokens("train"), self.starts, context) != manifest["windows_sha256"]:
            raise UserError(f"the teacher cache {self.path} was built on other tokens than this run's train "
                            "split; point train.distill.cache at a new folder to build one")

    def _manifest(self) -> dict:
        try:
            manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path} is not a teacher cache (no readable {MANIFEST}); delete it or point "
                            "train.distill.cache at a new folder") from exc
        if manifest.get("format") != FORMAT_VERSION:
            raise UserError(f"the teacher cache {self.path} has format {manifest.get('format')}, this stlm "
                            f"reads {FORMAT_VERSION}; build it again")
        return manifest

    def lookup(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.searchsorted(self.starts, starts)
        found = (rows < len(self.starts)) & (self.starts[np.minimum(rows, len(self.starts) - 1)] == starts)
        if not found.all():
            missing = int(np.asarray(starts)[~found][0])
            raise UserError(f"the teacher cache {self.path} holds no window at token offset {missing}: this run "
                            f"draws other windows than the layout it was built for ({self.manifest['layout']}); "
                            "use those settings, data.sampling=sequential, or a new train.distill.cache folder")
        index = torch.from_numpy(rows)
        return self.logprobs[index], self.ids[index]


class CachedTeacherBatches:
    """A batch source whose batches carry the cached teacher targets as extras `teacher_logprobs`
    and `teacher_ids` (the distillation loss takes them instead of running the teacher)."""

    def __init__(self, source, cache: TopkCache):
        self.source, self.cache = source, cache

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def batch(self, index: int):
        batch = self.source.batch(index)
        logprobs, ids = self.cache.lookup(self.source.starts(index))
        batch.extras.update(teacher_logprobs=logprobs, teacher_ids=ids)
        return batch


def build_run_cache(cfg, data, source, n_batches: int | None, teacher_model, device: torch.device,
                    world_size: int = 1, autocast: Callable | None = None) -> Path:
    """Build `train.distill.cache` for the run `cfg`: the windows that batches 0..n_batches-1 of
    `world_size` ranks draw from `source` (a `stlm.data.TokenBatches`)."""
    d, t = cfg.train.distill, cfg.train
    path = Path(d.cache)
    if n_batches is None:
        raise UserError("train.distill.cache needs a step or token budget (train.max_steps or "
                        "train.max_tokens) to know which windows to cache")
    for stale in path.parent.glob(f".tmp-{path.name}.*"):  # an interrupted build's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    layout = {"sampling": cfg.data.sampling, "seed": cfg.seed, "batch_size": t.batch_size,
              "grad_accum": t.grad_accum, "world_size": world_size, "batches": n_batches}
    return build_cache(path, teacher_model, d.teacher, data, planned_starts(source, n_batches, world_size),
                       source.context, d.top_k, layout, device, t.batch_size, autocast=autocast,
                       echo=lambda s: None)


def cached_teacher_batches(source, cfg, data, n_batches: int | None, teacher_model, rt) -> CachedTeacherBatches:
    """`source` with the targets of the cache `train.distill.cache`, built first (rank 0) when the
    folder does not exist."""
    d = cfg.train.distill
    if not Path(d.cache).exists():
        if rt.is_main:
            build_run_cache(cfg, data, source, n_batches, teacher_model, rt.device, rt.world_size, rt.autocast)
        rt.barrier()
    return CachedTeacherBatches(source, TopkCache(d.cache, d.teacher, data, source.context, d.top_k))
