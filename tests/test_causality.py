"""Every preset of the model zoo: no position sees a later token, the KV-cache path equals the
full forward, and a safetensors save/reload keeps logits and every weight tie.

Presets are shrunk for speed (small vocabulary and context, wide ones halved down to d_model 128
with even head sizes); their components and sharing layouts are kept.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import pytest
import torch
from safetensors.torch import load_model, save_model

from stlm.config.loader import compose_config, list_choices
from stlm.models import build_model

PRESETS = list_choices("model")
VOCAB, CONTEXT, T = 61, 32, 16


@lru_cache(maxsize=None)
def preset(name: str):
    return compose_config([f"model={name}"]).model


def tiny_preset(name: str):
    cfg = preset(name)
    d, d_ff = cfg.d_model, cfg.d_ff
    while d > 128 and (d // 2) % (2 * cfg.n_heads) == 0 and (d // 2) % cfg.rrhp_factor == 0 \
            and d_ff % 2 == 0:
        d, d_ff = d // 2, d_ff // 2
    return dataclasses.replace(cfg, vocab_size=VOCAB, context_length=min(cfg.context_length, CONTEXT),
                               d_model=d, d_ff=d_ff)


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(tiny_preset(name)).eval()


def ids(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, T), generator=torch.Generator().manual_seed(seed))


def tie_groups(model: torch.nn.Module) -> list[list[str]]:
    """Names that refer to one Parameter object, for every parameter used under several names."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


@pytest.mark.parametrize("name", PRESETS)
def test_no_position_sees_the_future(name):
    model = build(name)
    x = ids()
    with torch.no_grad():
        base = model(x).logits
        for t in (1, T // 2, T - 1):
            y = x.clone()
            y[:, t] = (y[:, t] + 1) % VOCAB
            out = model(y).logits
            torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
            assert not torch.allclose(out[:, t], base[:, t]), "changing token t must change logits at t"


@pytest.mark.parametrize("name", PRESETS)
def test_kv_cache_matches_full_forward(name):
    model = build(name)
    x = ids()
    with torch.no_grad():
        full = model(x).logits
        cache = model.new_cache()
        pieces = [model(x[:, :5], cache=cache).logits]  # prefill
        pieces += [model(x[:, t : t + 1], cache=cache).logits for t in range(5, 10)]  # one token at a time
        pieces.append(model(x[:, 10:], cache=cache).logits)  # a chunk after a non-empty cache
    assert cache.length == T
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-5)


def has_sharing(name: str) -> bool:
    cfg = preset(name)
    return cfg.tie_embeddings or cfg.sharing.layers != "none" or cfg.sharing.ffn != "none"


SHARED = [n for n in PRESETS if has_sharing(n)]


def test_presets_with_ties_are_found():
    assert {"llama_tied", "llama_shared", "llama_shared_lora", "sllama"} <= set(SHARED)
    assert "llama_untied" not in SHARED and "sllama_noshare" not in SHARED


@pytest.mark.parametrize("name", SHARED)
def test_save_and_reload_keep_every_tie(name, tmp_path):
    model = build(name, seed=0)
    path = tmp_path / "model.safetensors"
    save_model(model, str(path))
    reloaded = build(name, seed=1)  # different init: only the file can make logits agree
    x = ids()
    with torch.no_grad():
        assert not torch.allclose(reloaded(x).logits, model(x).logits)
        load_model(reloaded, str(path))
        torch.testing.assert_close(reloaded(x).logits, model(x).logits, rtol=0, atol=0)
    params = dict(reloaded.named_parameters(remove_duplicate=False))
    groups = tie_groups(model)
    assert groups and tie_groups(reloaded) == groups
    for names in groups:  # still one tensor, not equal copies
        assert len({params[n].data_ptr() for n in names}) == 1, names
