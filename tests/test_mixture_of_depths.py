"""Mixture-of-depths (Raposo et al., 2024): capacity 1.0 is the dense model, FLOPs fall as
configured, a routed block computes what a dense block restricted to its routed tokens computes
(original positions, causal order), rows routing different numbers of tokens decode exactly with
the KV cache, and the predictor learns from stop-gradient states. The zoo-wide causality and
KV-cache tests cover the `tiny-1m-mod` preset."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stlm.config import compose_config
from stlm.config.schema import ModelConfig, MoDConfig
from stlm.errors import ConfigError
from stlm.models import build_model
from stlm.models.components.mixture_of_depths import RoutedBlock, routed_fractions
from stlm.models.components.rope import apply_rope
from stlm.models.params import count_flops
from tiny_runs import grammar_overrides, resume_from_step_20

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = 61


def small(**mod) -> ModelConfig:
    return ModelConfig(d_model=32, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=64, context_length=32,
                       mod=MoDConfig(**mod))


def build(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB)


def ids(batch: int = 2, t: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, t), generator=torch.Generator().manual_seed(seed))


def test_capacity_one_is_the_dense_model_weight_for_weight_and_step_for_step():
    dense, full = build(small()), build(small(capacity=1.0, every=1))
    assert not any(isinstance(b, RoutedBlock) for b in full.core.blocks)
    assert dense.state_dict().keys() == full.state_dict().keys()
    x = ids()
    losses = []
    for model in (dense, full):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        run = []
        for _ in range(3):
            out = model(x, x)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            run.append(out.loss.item())
        losses.append(run)
    assert losses[0] == losses[1]
    with torch.no_grad():
        torch.testing.assert_close(full.eval()(x).logits, dense.eval()(x).logits, rtol=0, atol=0)


def layer_flops(cfg: ModelConfig, context: int) -> tuple[int, int]:
    """(matmul parameters, attention-score FLOPs per token) of one dense block of `cfg`."""
    d, kv = cfg.d_model, cfg.kv_heads * cfg.d_model // cfg.n_heads
    return 2 * d * d + 2 * d * kv + 3 * d * cfg.d_ff, 12 * d * context


@pytest.mark.parametrize("capacity", [0.5, 0.125])
def test_counted_flops_fall_as_configured(capacity):
    base = compose_config(["model=tiny-1m"]).model
    cfg = dataclasses.replace(base, mod=MoDConfig(capacity=capacity, every=2))
    uses_dense, flops_dense = count_flops(build(base))
    uses, flops = count_flops(build(cfg))
    matmul, attention = layer_flops(base, base.context_length)
    routed = base.n_layers // 2  # layers 1 and 3
    router = routed * base.d_model  # d_model -> 1 per routed block and token
    assert uses == uses_dense - round(routed * (1 - capacity) * matmul) + router
    # attention scores: a routed block's k tokens attend among k (capacity^2 of the dense cost)
    assert flops == 6 * uses + flops_dense - 6 * uses_dense - round(routed * (1 - capacity ** 2) * attention)
    assert flops / flops_dense < 1 - routed / base.n_layers * (1 - capacity) * 0.7


def masked_reference(block: RoutedBlock, x: torch.Tensor, rope, routed: torch.Tensor) -> torch.Tensor:
    """A routed block computed densely: every token runs through the block's projections at its
    own position, but attends only to earlier routed tokens; unrouted tokens keep x."""
    attn = block.attn
    h = block.attn_norm(x)
    q, k, v = attn.project_qkv(h)
    cos, sin = rope
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    t = x.shape[1]
    mask = torch.ones(t, t, dtype=torch.bool).tril() & routed[:, None, None, :]
    mask = mask | torch.eye(t, dtype=torch.bool)  # keep unrouted rows finite; they are discarded
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(x.shape)
    mid = x + attn.o_proj(y)
    out = mid + block.ffn(block.ffn_norm(mid))
    w = torch.sigmoid(block.router(x))
    return torch.where(routed[..., None], x + w * (out - x), x)


@pytest.mark.parametrize("training", [True, False])
def test_a_routed_block_equals_the_dense_block_restricted_to_its_tokens(training):
    model = build(small(capacity=0.5, every=2))
    block = model.core.blocks[1]
    x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(3))
    positions = torch.arange(5, 21)  # not starting at 0: positions are the tokens' own
    rope = model.core.rope(positions)
    model.train(training)
    aux = {}
    with torch.no_grad():
        got = block(x, rope, None, 1, positions=positions, aux=aux)
        r = block.router(x).squeeze(-1)
        if training:  # top half of each row by router logit
            routed = r >= r.topk(8, dim=1).values[:, -1:]
        else:
            routed = r > 0
    assert (routed.sum(1) == 8).all() if training else len(set(routed.sum(1).tolist())) > 1
    assert ("mod_1" in aux) == training
    torch.testing.assert_close(got, masked_reference(block, x, rope, routed), rtol=1e-5, atol=1e-5)


def test_uneven_rows_decode_exactly_and_the_cache_holds_routed_tokens_only():
    model = build(small(capacity=0.5, every=2)).eval()
    x = ids(batch=3, t=24)
    with torch.no_grad():
        full = model(x).logits
        cache = model.new_cache()
        pieces = [model(x[:, :7], cache=cache).logits]
        pieces += [model(x[:, t : t + 1], cache=cache).logits for t in range(7, 24)]
        torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-5)
        assert cache.layer_length(0) == 24 and cache.slot_positions[0] is None
        real = cache.past_mask(1)
        assert real is not None and not real.all()  # rows differ: padding slots exist
        assert 0 < int(real.sum()) < 3 * 24
        fractions = routed_fractions(model, x)
        assert set(fractions) == {1, 3} and int(real.sum()) == round(fractions[1] * 3 * 24)
        assert set(cache.slot_positions[1][real].tolist()) <= set(range(24))
        # rolling back (as speculative decoding does) then redoing gives the same logits
        cache.crop(15)
        redo = model(x[:, 15:], cache=cache).logits
        torch.testing.assert_close(redo, full[:, 15:], rtol=1e-4, atol=1e-5)


def test_predictor_learns_from_stop_gradient_states_and_routes_causally():
    model = build(small(capacity=0.25, every=2, router="predictor"))
    x = ids()
    out = model.train()(x, x)
    assert set(out.aux_losses) == {"mod_1", "mod_3"}
    out.aux_losses["mod_1"].backward()
    block = model.core.blocks[1]
    assert block.predictor.up.weight.grad.abs().sum() > 0
    assert block.router.weight.grad is None and model.embedder.token.weight.grad is None
    model.eval()
    with torch.no_grad():
        full = model(x).logits
        cache = model.new_cache()
        steps = [model(x[:, t : t + 1], cache=cache).logits for t in range(x.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("override, message", [
    ("model.mod.capacity=0", "model.mod.capacity must be in (0, 1]"),
    ("model.mod.capacity=1.5", "model.mod.capacity must be in (0, 1]"),
    ("model.mod.every=0", "model.mod.every must be >= 1"),
    ("model.mod.per_layer=[0.5,1.0]", "one capacity per layer"),
    ("model.mod.router=topk", "model.mod.router"),
])
def test_bad_settings_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        compose_config(["model=tiny-1m-mod", override])


def test_per_layer_capacities_and_no_llama_twin():
    from stlm.hf.llama import check_llama_compatible

    model = build(small(per_layer=[1.0, 0.25, 0.5, 1.0]))
    assert [getattr(b, "capacity", 1.0) for b in model.core.blocks] == [1.0, 0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="mod.capacity=1"):
        check_llama_compatible(compose_config(["model=tiny-1m-mod"]).model)
    check_llama_compatible(compose_config(["model=tiny-1m-mod", "model.mod.capacity=1.0"]).model)


# ---------------------------------------------------------------------------------------------
# End to end: `stlm train model=tiny-1m-mod` learns, reports its router losses, resumes exactly
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mod_model_trains_evaluates_resumes_exactly_and_loses_layers_keeping_routing(tmp_path):
    from stlm.compress.pipeline import CompressRequest, compress_run
    from stlm.runs import load_run
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    # 2 layers: layer 1 routes half of the tokens, as the preset's `every` would; per_layer lets a
    # run that loses a layer know which blocks route
    overrides = grammar_overrides(tmp_path, "whole", "tiny-1m-mod", "model.mod.per_layer=[1.0,0.5]")
    whole = run_training(compose_config(overrides), echo=lambda s: None)
    records = read_metrics(Path(whole["run_dir"]) / "metrics.jsonl")
    train = [r for r in records if "aux.mod_1" in r]
    assert train and not any("aux.mod_0" in r for r in train)
    assert train[-1]["loss"] < train[0]["loss"] - 1.0  # bytes: from ~ln(257) well down
    assert train[-1]["aux.mod_1"] < math.log(2)  # the router predicts its own top-k better than chance
    assert whole["val_bpb"] < 6.0 and "minimal_pairs" in json.dumps(whole)

    resumed = resume_from_step_20(whole["run_dir"], tmp_path / "runs" / "copy")
    for r in train:
        assert resumed[r["step"]]["loss"] == r["loss"]
        assert resumed[r["step"]]["aux.mod_1"] == r["aux.mod_1"]

    # ShortGPT layer dropping keeps each kept block's routing (model.mod.per_layer)
    out = tmp_path / "runs" / "dropped"
    summary = compress_run(CompressRequest(whole["run_dir"], "drop-layers", out, {"layers": 1}, pairs=2),
                           echo=lambda s: None)
    kept = [i for i in range(2) if i not in summary["compression"]["settings"]["dropped"]]
    dropped = load_run(out).model
    assert [getattr(b, "capacity", 1.0) for b in dropped.core.blocks] == [[1.0, 0.5][i] for i in kept]
