"""Cross-layer sharing: which layers hold the same module, LoRA adapters on shared weights, and
the errors for settings that contradict each other."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stlm.config.loader import ConfigError, compose_config
from stlm.config.schema import ModelConfig, SharingConfig
from stlm.models import build_model
from stlm.models.lora import LoRAShared
from stlm.models.params import count_parameters
from stlm.models.sharing import layer_groups


def small(n_layers: int = 6, **sharing) -> ModelConfig:
    return ModelConfig(vocab_size=40, d_model=32, n_layers=n_layers, n_heads=4, d_ff=64,
                       context_length=16, sharing=SharingConfig(**sharing))


def same_object_pattern(modules) -> list[int]:
    """For each layer, the first layer holding the very same module object."""
    return [next(j for j, m in enumerate(modules) if m is mod) for mod in modules]


@pytest.mark.parametrize("n_layers,groups", [(6, 1), (6, 2), (6, 3), (6, 4), (7, 3), (6, 6)])
def test_grouped_layout_is_floor_i_g_over_l(n_layers, groups):
    expected = [i * groups // n_layers for i in range(n_layers)]
    assert layer_groups(n_layers, groups) == expected
    model = build_model(small(n_layers, layers="groups", groups=groups))
    first_of_group = [expected.index(g) for g in expected]
    assert same_object_pattern([b.attn for b in model.core.blocks]) == first_of_group
    assert same_object_pattern([b.ffn for b in model.core.blocks]) == first_of_group
    norms = [b.attn_norm for b in model.core.blocks] + [b.ffn_norm for b in model.core.blocks]
    assert len({id(n) for n in norms}) == 2 * n_layers  # norms stay per layer
    unshared = count_parameters(build_model(small(n_layers))).total
    per_block = 4 * 32 * 32 + 3 * 32 * 64
    assert count_parameters(model).total == unshared - (n_layers - groups) * per_block


@pytest.mark.parametrize("mode,skip,expected", [("all", 1, [0, 0, 0, 0, 0, 0]),
                                                ("interior", 1, [0, 1, 1, 1, 1, 5]),
                                                ("interior", 2, [0, 1, 2, 2, 4, 5])])
def test_ffn_sharing_layouts(mode, skip, expected):
    model = build_model(small(ffn=mode, interior_skip=skip))
    assert same_object_pattern([b.ffn for b in model.core.blocks]) == expected
    assert same_object_pattern([b.attn for b in model.core.blocks]) == list(range(6))


def plain_weights(lora_model) -> dict[str, torch.Tensor]:
    """The LoRA model's weights under the plain shared model's names, adapters dropped."""
    return {k.replace(".shared.", "."): v for k, v in lora_model.state_dict().items()
            if ".adapters." not in k}


@pytest.mark.parametrize("sharing", [dict(layers="groups", groups=2), dict(ffn="interior")])
def test_lora_starts_as_the_shared_model(sharing):
    torch.manual_seed(0)
    lora = build_model(small(**sharing, lora_rank=4, lora_alpha=8.0)).eval()
    plain = build_model(small(**sharing)).eval()
    plain.load_state_dict(plain_weights(lora), strict=True)
    x = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(lora(x).logits, plain(x).logits, rtol=0, atol=1e-6)
        adapter = next(m for m in lora.modules() if isinstance(m, LoRAShared)).adapters
        next(iter(adapter.values())).B.fill_(0.1)  # a non-zero B must change the output
        assert not torch.allclose(lora(x).logits, plain(x).logits, atol=1e-4)


def test_each_layer_has_its_own_adapters_on_one_shared_weight():
    torch.manual_seed(0)
    model = build_model(small(layers="groups", groups=1, lora_rank=2))
    views = [b.ffn for b in model.core.blocks]
    assert all(isinstance(v, LoRAShared) for v in views)
    assert len({id(v.shared) for v in views}) == 1  # one shared module
    assert len({id(v.adapters["gate_proj"].A) for v in views}) == 6  # six adapters
    x = torch.randint(0, 40, (2, 12))
    model(x, x).loss.backward()
    for v in views:  # B = 0 at init: gradients reach B, A only once B moves
        assert v.adapters["down_proj"].B.grad.abs().sum() > 0
        assert v.adapters["down_proj"].A.grad.abs().sum() == 0


def test_lora_on_sllama_adapts_spmlp_not_pwa():
    cfg = compose_config(["model=sllama", "model.sharing.lora_rank=2"]).model
    model = build_model(cfg)
    assert not isinstance(model.core.blocks[0].attn, LoRAShared)  # PWA has no linear weight
    assert isinstance(model.core.blocks[0].ffn, LoRAShared)
    per_layer = 2 * (64 + 192) * 2  # gate and down, rank 2
    assert count_parameters(model).total == 2_585_792 + 6 * per_layer


@pytest.mark.parametrize("overrides,message", [
    (["model.sharing.lora_rank=4"], "nothing is shared"),
    (["model.sharing.layers=groups", "model.sharing.ffn=all"], "set model.sharing.ffn=none"),
    (["model.sharing.layers=groups", "model.sharing.groups=7"], r"groups must be in \[1, n_layers"),
    (["model.sharing.ffn=interior", "model.sharing.interior_skip=2", "model.n_layers=5"],
     "interior FFN sharing needs"),
    (["model.sharing.layers=groups", "model.sharing.lora_rank=-1"], "lora_rank must be >= 0"),
])
def test_contradictory_sharing_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):  # by the value rules or when building
        cfg = compose_config(["model=llama_untied", *overrides]).model
        build_model(dataclasses.replace(cfg, vocab_size=40))
