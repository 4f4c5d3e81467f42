"""A 2 x 2 Hydra multirun sweep of very tiny runs: each point is its own run under one sweep
folder, and `stlm report SWEEP_DIR` gathers them into one table and plots."""

from __future__ import annotations

import json

import pytest

from stlm.cli import main
from stlm.errors import UserError
from stlm.train.sweep import expand
from test_train_loop import tiny_overrides

pytestmark = pytest.mark.slow


def test_expand_follows_hydra_multirun():
    fixed, swept, points = expand(["train.lr=1e-3,3e-3", "model=tiny-1m,tiny-3m", "train.max_steps=3"])
    assert fixed == ["train.max_steps=3"] and swept == {"train.lr": ["0.001", "0.003"], "model": ["tiny-1m", "tiny-3m"]}
    assert points == [["train.lr=0.001", "model=tiny-1m"], ["train.lr=0.001", "model=tiny-3m"],
                      ["train.lr=0.003", "model=tiny-1m"], ["train.lr=0.003", "model=tiny-3m"]]
    with pytest.raises(UserError, match="needs at least one swept override"):
        expand(["train.lr=1e-3"])


def test_two_by_two_sweep_gathered_into_one_report(tmp_path, capsys, small_data):
    """The presets keep their widths (128 and 256) at one layer, so the points differ in size."""
    base = [o for o in tiny_overrides(tmp_path, "unused", "train.max_steps=4", "train.eval_every=2",
                                      "train.checkpoint_every=4", "eval.final_val_batches=2", "model.n_layers=1",
                                      "eval.sample_tokens=4", *small_data)
            if not o.startswith(("run_name=", "model.name=", "train.lr=", "model.d_model=", "model.n_heads=",
                                 "model.d_ff=", "model.n_layers=2"))]
    assert main(["train", "-m", "--sweep-name", "grid", "train.lr=1e-2,3e-2", "model=tiny-1m,tiny-3m", *base]) == 0
    sweep_dir = tmp_path / "runs" / "grid"
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["swept"] == {"train.lr": ["0.01", "0.03"], "model": ["tiny-1m", "tiny-3m"]}
    runs = [p["run"] for p in record["points"]]
    assert runs == ["train.lr=0.01,model=tiny-1m", "train.lr=0.01,model=tiny-3m",
                    "train.lr=0.03,model=tiny-1m", "train.lr=0.03,model=tiny-3m"]
    assert all(p["status"] == "done" for p in record["points"])
    summaries = {r: json.loads((sweep_dir / r / "summary.json").read_text()) for r in runs}
    assert {s["model"] for s in summaries.values()} == {"tiny-1m", "tiny-3m"}
    sizes = {r.split(",")[1]: s["parameters"] for r, s in summaries.items()}
    assert sizes["model=tiny-1m"] < sizes["model=tiny-3m"]
    assert all(s["steps"] == 4 for s in summaries.values())

    capsys.readouterr()
    assert main(["report", str(sweep_dir)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| 0.0")]
    assert len(rows) == 4 and table.splitlines()[0].startswith("| train.lr | model | parameters")
    for run, s in summaries.items():
        lr, model = (v.split("=")[1] for v in run.split(","))
        (row,) = [r for r in rows if r.startswith(f"| {lr} | {model} |")]
        assert f"{s['val_loss']:.4f}" in row
    report = sweep_dir / "report"
    assert (report / "sweep.md").read_text().count("| 0.0") == 4
    for png in ("loss_curves.png", "sweep.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"

    # the same sweep again skips its finished points
    assert main(["train", "-m", "--sweep-name", "grid", "train.lr=1e-2,3e-2", "model=tiny-1m,tiny-3m", *base]) == 0
    assert "already finished" in capsys.readouterr().out
