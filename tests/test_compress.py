"""`stlm compress`: every method's output is an ordinary run that loads, evaluates, generates and
reports; pruning hits its sparsity exactly; structured pruning and layer dropping shrink shapes
and parameter counts by the expected amounts; SVD at full rank reproduces the logits; int8 barely
moves bits per byte; bad input is one line (exit 2) and leaves nothing behind."""

from __future__ import annotations

import json

import pytest
import torch

from stlm.cli import main
from stlm.compress.layers import QuantLinear, dequantize, pack_int4, quantize, unpack_int4
from stlm.compress.measure import weight_counts
from stlm.compress.pipeline import CompressRequest, compress_run
from stlm.compress.targets import block_linears
from stlm.config import compose_config
from stlm.runs import load_run
from stlm.train import run_training

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # trains a tiny model once

D, LAYERS, HEADS, FF = 32, 3, 4, 64


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 47k-parameter byte-level model trained for 30 steps on 400 documents of the built-in grammar."""
    root = tmp_path_factory.mktemp("compress")
    torch.set_num_threads(1)
    cfg = compose_config([
        f"runs_dir={root / 'runs'}", "run_name=base", "data.sources=[{name:grammar,max_documents:400}]",
        "data.tokenizer.kind=byte", "data.val_fraction=0.05", f"data.cache_dir={root / 'cache'}",
        "data.num_proc=1", "model.name=micro", f"model.d_model={D}", f"model.n_layers={LAYERS}",
        f"model.n_heads={HEADS}", f"model.d_ff={FF}", "model.context_length=64", "train.batch_size=8",
        "train.max_steps=30", "train.warmup_steps=5", "train.lr=1e-2", "train.min_lr=1e-3",
        "train.eval_every=30", "train.eval_batches=2", "train.checkpoint_every=30", "train.progress=false",
        "eval.minimal_pairs=false", "eval.sample_tokens=4", "eval.pairs_per_paradigm=2",
        "eval.batch_size=32"])
    run_training(cfg, echo=lambda s: None)
    return root / "runs" / "base"


SETTINGS = {  # the compressed runs the tests share: method and options
    "magnitude": ("magnitude", {"sparsity": 0.3}),
    "magnitude-layer-ft": ("magnitude", {"sparsity": 0.5, "scope": "layer"}),
    "nm": ("nm", {}),
    "heads": ("heads", {"fraction": 0.5}),
    "neurons": ("neurons", {"fraction": 0.25}),
    "drop-layers": ("drop-layers", {"layers": 2}),
    "int8": ("int8", {}),
    "int4": ("int4", {"group_size": 16}),
    "svd": ("svd", {"rank": FF}),
}


def compress(src, out, method, before=None, finetune_steps=0, **options):
    req = CompressRequest(src, method, out, options, pairs=2, finetune_steps=finetune_steps, before=before)
    return compress_run(req, echo=lambda s: None)


@pytest.fixture(scope="module")
def runs(base):
    """name -> (run directory, summary) for every entry of SETTINGS."""
    first = compress(base, base.parent / "int8-cli-check", "int8")
    before = first["compression"]["before"]
    out = {}
    for name, (method, options) in SETTINGS.items():
        path = base.parent / name
        ft = 3 if name == "magnitude-layer-ft" else 0
        out[name] = path, compress(base, path, method, before, ft, **options)
    return out


def block_weights(run):
    return [m.weight for _, m in block_linears(load_run(run).model)]


def test_every_method_writes_an_ordinary_run(base, runs, tmp_path, capsys):
    """Each output loads, evaluates and generates through the ordinary commands; `stlm report`
    compares them with the original; the numbers `stlm compress` recorded are `stlm eval`'s."""
    for name, (path, summary) in runs.items():
        method = SETTINGS[name][0]
        assert summary["compression"]["method"] == method
        assert [s.method for s in load_run(path).cfg.model.compression.steps] == [method]
        assert main(["eval", str(path), "--tasks", "bpb"]) == 0
        bpb = json.loads((path / "eval" / "bpb.json").read_text())["bpb"]
        assert bpb == pytest.approx(summary["val_bpb"], rel=1e-5), name
        assert main(["generate", str(path), "--prompt", "the", "--max-new-tokens", "4"]) == 0
    capsys.readouterr()
    assert main(["report", str(base), *(str(p) for p, _ in runs.values()), "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| training | compression | - | magnitude | magnitude | nm | heads |" in table
    assert "| training | model_bytes |" in table and "| training | nonzero_parameters |" in table
    assert not list(base.parent.glob(".tmp-*"))


def test_the_cli_prints_before_and_after(base, tmp_path, capsys):
    assert main(["compress", str(base), "--method", "nm", "--out", str(tmp_path / "nm"), "--pairs", "1"]) == 0
    out = capsys.readouterr().out
    for row in ("parameters", "non-zero parameters", "bytes on disk", "bits per byte", "minimal pairs"):
        assert f"\n{row} " in out
    assert (tmp_path / "nm" / "eval" / "grammar.json").is_file()


def test_magnitude_leaves_exactly_the_target_fraction_of_zeros(base, runs):
    weights = block_weights(runs["magnitude"][0])
    assert sum(int((w == 0).sum()) for w in weights) == round(0.3 * sum(w.numel() for w in weights))
    assert sum(int((w == 0).sum()) for w in block_weights(base)) == 0
    # per layer, and still after 3 steps of recovery fine-tuning
    path, summary = runs["magnitude-layer-ft"]
    assert summary["compression"]["settings"]["finetune_steps"] == 3
    assert [int((w == 0).sum()) for w in block_weights(path)] == [w.numel() // 2 for w in weights]
    for w in block_weights(runs["nm"][0]):
        assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) == 2).all()


def test_structured_pruning_shrinks_shapes_and_parameters(base, runs):
    before = weight_counts(load_run(base).model)["parameters"]
    hd = D // HEADS
    path, summary = runs["heads"]
    for block in load_run(path).model.core.blocks:
        assert block.attn.q_proj.weight.shape == (2 * hd, D) and block.attn.o_proj.weight.shape == (D, 2 * hd)
    assert summary["parameters"] == before - LAYERS * 4 * (2 * hd) * D  # q, k, v rows and o columns
    path, summary = runs["neurons"]
    assert all(b.ffn.down_proj.weight.shape == (D, 48) for b in load_run(path).model.core.blocks)
    assert summary["parameters"] == before - LAYERS * 3 * 16 * D  # swiglu: gate, up rows, down columns
    path, summary = runs["drop-layers"]
    block = sum(p.numel() for p in load_run(base).model.core.blocks[0].parameters())
    assert load_run(path).cfg.model.n_layers == 1 and summary["parameters"] == before - 2 * block
    assert len(summary["compression"]["settings"]["dropped"]) == 2


def test_chained_steps_rebuild_from_config(runs, tmp_path):
    compress(runs["heads"][0], tmp_path / "b", "drop-layers")
    summary = compress(tmp_path / "b", tmp_path / "c", "int4", group_size=8)
    loaded = load_run(tmp_path / "c")
    c = loaded.cfg.model.compression
    assert [s.method for s in c.steps] == ["heads", "drop-layers", "int4"]
    assert c.heads == [2, 2] and loaded.cfg.model.n_layers == 2 and c.quant_bits == 4
    assert all(n.startswith(("core.blocks.0.", "core.blocks.1.", "head.")) for n in c.quantized)
    assert summary["model_bytes"] < 0.5 * summary["compression"]["before"]["model_bytes"]


@torch.no_grad()
def test_svd_at_full_rank_reproduces_the_logits(base, runs, tmp_path):
    original, factored = load_run(base).model, load_run(runs["svd"][0]).model
    assert sum(type(m).__name__ == "LowRankLinear" for m in factored.modules()) == LAYERS * 7
    ids = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(original(ids).logits, factored(ids).logits, atol=1e-4, rtol=0)
    summary = compress(base, tmp_path / "energy", "svd", runs["svd"][1]["compression"]["before"], energy=0.5)
    assert summary["parameters"] < summary["compression"]["before"]["parameters"]


def test_int8_moves_bits_per_byte_by_less_than_0_01_and_shrinks_the_file(runs):
    """Measured on this model: |delta bpb| ~ 1e-4 for int8 (2e-3 for int4 in groups of 16)."""
    s8, s4 = runs["int8"][1], runs["int4"][1]
    before = s8["compression"]["before"]
    assert abs(s8["val_bpb"] - before["val_bpb"]) < 0.01
    assert abs(s4["val_bpb"] - before["val_bpb"]) < 0.05
    assert s4["model_bytes"] < s8["model_bytes"] < 0.5 * before["model_bytes"]
    layer = load_run(runs["int4"][0]).model.core.blocks[0].attn.q_proj
    assert isinstance(layer, QuantLinear) and layer.qweight.dtype == torch.uint8
    assert layer.qweight.shape == (D, D // 2)


def test_int4_codes_pack_two_per_byte_and_round_to_nearest():
    w = torch.randn(6, 32, generator=torch.Generator().manual_seed(1))
    codes, scale = quantize(w, 4, 8)
    assert codes.min() >= -7 and codes.max() <= 7 and scale.shape == (6, 4)
    assert torch.equal(unpack_int4(pack_int4(codes)), codes)
    err = (dequantize(codes, scale, 4, 8) - w).abs()
    assert (err <= scale.float().repeat_interleave(8, 1) / 2 + 1e-3).all()


@pytest.mark.parametrize("argv, message", [
    (["--method", "prune"], "unknown compression method 'prune'"),
    (["--method", "magnitude", "--sparsity", "1.5"], "--sparsity must be in [0, 1)"),
    (["--method", "magnitude", "--rank", "3"], "--rank does not apply to --method magnitude"),
    (["--method", "int8", "--finetune-steps", "5"], "--finetune-steps does not apply to --method int8"),
    (["--method", "svd"], "needs exactly one of --rank R or --energy E"),
    (["--method", "heads", "--fraction", "0.01"], "removes no head group of 4"),
    (["--method", "drop-layers", "--layers", "3"], "--layers must be in [1, 2]"),
    (["--method", "int4", "--group-size", "7"], "--group-size must be an even number >= 2, got 7"),
])
def test_bad_input_is_one_line_and_leaves_no_output(base, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["compress", str(base), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_missing_run_and_existing_output_are_refused(base, tmp_path, capsys):
    assert main(["compress", str(tmp_path / "nope"), "--method", "int8", "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main(["compress", str(base), "--method", "int8", "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_compressed_runs_refuse_resume_and_unrepresentable_export(runs, tmp_path, capsys):
    assert main(["train", f"resume={runs['nm'][0]}"]) == 2
    assert "is a `stlm compress` output" in capsys.readouterr().err
    assert main(["export", str(runs["int8"][0]), str(tmp_path / "hf")]) == 2
    assert "the exported model cannot rebuild" in capsys.readouterr().err and not (tmp_path / "hf").exists()


def test_training_refuses_a_compression_section(capsys):
    assert main(["train", "model.compression.d_ff=[8]"]) == 2
    assert "describes a `stlm compress` output" in capsys.readouterr().err


def test_study_frontier_keeps_only_undominated_points():
    from stlm.study.compress import on_frontier

    points = [{"model_bytes": 100, "val_bpb": 1.0}, {"model_bytes": 40, "val_bpb": 1.1},
              {"model_bytes": 40, "val_bpb": 1.2}, {"model_bytes": 100, "val_bpb": 1.05}]
    assert [on_frontier(p, points) for p in points] == [True, True, False, False]


@torch.no_grad()
def test_heads_under_grouped_query_attention_remove_whole_groups():
    """A key/value head goes with its query heads; the config alone rebuilds the pruned model."""
    import copy

    from stlm.compress.methods import get_method
    from stlm.compress.registry import Context
    from stlm.compress.structure import apply_structure
    from stlm.config.schema import ModelConfig, RunConfig
    from stlm.models import build_model

    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                                      context_length=32, init_std=0.2))
    model = build_model(cfg.model, 257).eval()
    ids = torch.randint(0, 257, (2, 32), generator=torch.Generator().manual_seed(1))
    masked = copy.deepcopy(model)
    ctx = Context(model, copy.deepcopy(cfg), None, {"fraction": 0.5}, lambda: iter([ids]), log=lambda s: None)
    settings = get_method("heads").apply(ctx)
    for block, groups in zip(masked.core.blocks, settings["removed_kv_groups"]):  # silence them instead
        for g in groups:  # kv group g serves query heads 2g, 2g+1: output columns [16g, 16g + 16)
            block.attn.o_proj.weight[:, 16 * g: 16 * g + 16] = 0
    assert torch.allclose(model(ids).logits, masked(ids).logits, atol=1e-5)
    assert ctx.cfg.model.compression.heads == [2, 2] and ctx.cfg.model.compression.kv_heads == [1, 1]
    assert all(len(g) == 1 for g in settings["removed_kv_groups"])
    rebuilt = apply_structure(build_model(ctx.cfg.model, 257), ctx.cfg.model).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.core.blocks[0].attn.k_proj.weight.shape == (8, 32)
    assert torch.equal(rebuilt(ids).logits, model(ids).logits)
