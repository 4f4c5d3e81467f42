"""Mixes follow their weights; curriculum stages come in order, cut at their token counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stlm.config.schema import DataConfig, SourceConfig, StageConfig, TokenizerConfig
from stlm.data.mix import mix, stages, training_text
from stlm.data.prepare import prepare_data
from stlm.errors import UserError

BYTE_EOT = 256


@pytest.fixture
def two_sources(tmp_path) -> tuple[SourceConfig, SourceConfig]:
    """`alpha` documents (mostly short) and `beta` documents (mostly long)."""
    rng = np.random.default_rng(0)
    for name, mean in (("alpha", 40), ("beta", 400)):
        rows = [{"text": f"{name} {i} " + "x" * int(rng.integers(1, 2 * mean))} for i in range(3000)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return (SourceConfig(name="text", path=str(tmp_path / "alpha.jsonl")),
            SourceConfig(name="text", path=str(tmp_path / "beta.jsonl")))


def documents(ids: np.ndarray) -> list[str]:
    """Byte-tokenizer ids back to documents (a cut last document included)."""
    pieces = [d[d != BYTE_EOT] for d in np.split(ids, np.flatnonzero(ids == BYTE_EOT))]
    return [bytes(d.astype(np.uint8)).decode() for d in pieces if len(d)]


def byte_cfg(tmp_path, **kw) -> DataConfig:
    return DataConfig(name="m", tokenizer=TokenizerConfig(kind="byte"), num_proc=1, val_fraction=0.05,
                      cache_dir=str(tmp_path / "cache"), **kw)


def test_mix_shares_of_text_follow_the_weights(tmp_path, two_sources):
    alpha, beta = two_sources
    alpha.weight, beta.weight = 3.0, 1.0
    cfg = byte_cfg(tmp_path, sources=[alpha, beta], max_train_tokens=200_000)
    data = prepare_data(cfg, progress=False)
    docs = documents(data.tokens("train")[:])
    chars = {name: sum(len(d) for d in docs if d.startswith(name)) for name in ("alpha", "beta")}
    assert chars["alpha"] / (chars["alpha"] + chars["beta"]) == pytest.approx(0.75, abs=0.02)
    alpha_ids = [int(d.split()[1]) for d in docs if d.startswith("alpha")]
    assert alpha_ids == sorted(alpha_ids)  # each source keeps its own order
    owner = "".join(d[0] * len(d) for d in docs)  # the source of every character, in order
    assert all({"a", "b"} <= set(owner[i:i + 5000]) for i in range(0, len(owner) - 5000, 5000))


def test_an_exhausted_source_leaves_the_rest_of_the_mix(tmp_path, two_sources):
    alpha, beta = two_sources
    alpha.max_documents = 50
    cfg = byte_cfg(tmp_path, sources=[alpha, beta])
    cfg.val_fraction = 0.0
    docs = [t for t, _ in mix(stages(cfg, "train")[0].sources, "train", cfg)]
    assert sum(d.startswith("alpha") for d in docs) == 50 and sum(d.startswith("beta") for d in docs) == 3000
    assert docs[-1].startswith("beta 2999")


def test_stages_come_in_order_and_cut_at_their_token_counts(tmp_path, two_sources):
    alpha, beta = two_sources
    cfg = byte_cfg(tmp_path, stages=[StageConfig(tokens=5000, sources=[alpha]),
                                     StageConfig(tokens=20_000, sources=[beta]),
                                     StageConfig(tokens=0, sources=[alpha])])
    data = prepare_data(cfg, progress=False)
    train = data.tokens("train")[:]
    assert data.meta["splits"]["train"]["stage_tokens"][:2] == [5000, 20_000]
    assert all(d.startswith("alpha") for d in documents(train[:5000]))
    assert all(d.startswith("beta") for d in documents(train[5000:25_000]))
    assert all(d.startswith("alpha") for d in documents(train[25_000:]))
    assert bytes(train[25_000:25_010].astype(np.uint8)).startswith(b"alpha 0 ")  # stage 3 starts afresh
    assert all(d.startswith("alpha") for d in documents(data.tokens("val")[:]))  # the last stage's mix


def test_tokenizer_training_text_samples_every_stage(tmp_path, two_sources):
    alpha, beta = two_sources
    cfg = byte_cfg(tmp_path, stages=[StageConfig(tokens=10, sources=[alpha]), StageConfig(sources=[beta])])
    text = "".join(training_text(cfg, 2000))
    assert len(text) == 2000 and text.startswith("alpha 0") and "beta 0" in text[1000:]


def test_bad_mixes_are_clear(tmp_path, two_sources):
    alpha, _ = two_sources
    alpha.weight = 0.0
    with pytest.raises(UserError, match=r"data\.sources\.0\.weight=0\.0 must be > 0"):
        prepare_data(byte_cfg(tmp_path, sources=[alpha]), progress=False)
    with pytest.raises(UserError, match=r"data\.stages\.1\.sources is empty"):
        prepare_data(byte_cfg(tmp_path, stages=[StageConfig(tokens=5, sources=[two_sources[1]]), StageConfig()]),
                     progress=False)
    with pytest.raises(UserError, match=r"grammar source never ends; set data\.sources\.0\.max_documents"):
        prepare_data(byte_cfg(tmp_path, sources=[SourceConfig(name="grammar")]), progress=False)
