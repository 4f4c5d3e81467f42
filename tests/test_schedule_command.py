"""`stlm schedule`: the lr and dropout curves of a config, printed and plotted, with no data."""

from __future__ import annotations

import pytest

from stlm.cli import main
from stlm.commands.schedule import curves
from stlm.config.loader import compose_config
from stlm.train.schedule import lr_at


def rows(out: str) -> dict[int, tuple[float, float]]:
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].isdigit():
            table[int(parts[0])] = (float(parts[2]), float(parts[3]))
    return table


def test_schedule_command_prints_and_plots_without_data(tmp_path, capsys):
    out_png = tmp_path / "plots" / "curves.png"
    cache = tmp_path / "cache"
    args = ["train.max_steps=101", "train.warmup_steps=20", "train.lr=1e-3", "train.min_lr=1e-4",
            "train.schedule=wsd", "train.cooldown_fraction=0.25", "model.dropout=0.2",
            "train.dropout_schedule.shape=early", "train.dropout_schedule.end=0.5", f"data.cache_dir={cache}"]
    assert main(["schedule", *args, "--out", str(out_png), "--rows", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("101 optimizer steps; lr: wsd (linear cool-down, last 0.25), warmup 20")
    table = rows(out)  # 1-based steps as the trainer logs them
    assert table[1] == (pytest.approx(5e-5), 0.2)  # first step: 1/20 of the peak
    assert table[20][0] == pytest.approx(1e-3)  # end of warmup
    assert table[81] == (pytest.approx(1e-3), 0.0)  # last stable step; dropout off from step 51
    assert table[51][1] == 0.2 and table[52][1] == 0.0  # early dropout: on for steps 0..50 (0-based)
    assert table[101][0] == pytest.approx(1e-4)  # min_lr at the last step
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not cache.exists()  # nothing was prepared


def test_curves_are_the_trainers_rates():
    cfg = compose_config(["train.max_steps=37", "train.schedule=linear", "train.warmup_steps=5"])
    lrs, drops = curves(cfg)
    assert lrs == [lr_at(s, 37, cfg.train) for s in range(37)] and len(drops) == 37


def test_minutes_only_budget_needs_steps(tmp_path, capsys):
    base = ["train.max_steps=null", "train.max_minutes=2"]
    assert main(["schedule", *base, "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --steps N" in err[0]
    assert main(["schedule", *base, "train.schedule=linear", "train.warmup_steps=0", "train.lr=1e-3",
                 "train.min_lr=0", "--steps", "10", "--out", str(tmp_path / "b.png")]) == 0
    table = rows(capsys.readouterr().out)
    assert table[6][0] == pytest.approx(1e-3 * 0.5)  # step 5 of 10: half the time budget spent
