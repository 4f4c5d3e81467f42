"""`stlm study conditional` at a tiny budget: every available arm trains on the same tokens, each
inference mode is scored on the same held-out windows with FLOPs counted from its computation,
and the table, JSON and plot are written; a rerun reuses the trained arms."""

import json

import pytest
import torch

from stlm.cli import main
from stlm.models import build_model
from stlm.runs import load_run
from stlm.train.setup import seed_everything
from stlm.study.conditional import ARMS, ConditionalSettings, run_conditional_study

SMALL = ("model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.n_layers=4",
         "data.sources.0.max_documents=400", "data.tokenizer.kind=byte", "train.batch_size=4",
         "train.context_length=32")


@pytest.mark.slow
def test_conditional_study_measures_compute_and_quality_per_mode(tmp_path):
    s = ConditionalSettings(budget=0.005, out=tmp_path / "study", arms=("dense", "layerskip", "pause"),
                            threads=1, progress=False,
                            overrides=(*SMALL, f"data.cache_dir={tmp_path / 'cache'}"))
    results = run_conditional_study(s, echo=lambda line: None)
    rows = {(r["arm"], r["mode"]): r for r in results["rows"]}
    assert set(rows) == {("dense", "full"), *(("layerskip", m.name) for m in ARMS["layerskip"].modes),
                         ("pause", "pauses-2"), ("pause", "no-pauses")}
    assert len({r["tokens"] for r in results["rows"]}) == 1  # every arm trained on the same tokens
    assert len({r["val_bytes"] for r in results["rows"]}) == 1  # every mode scored the same text
    dense = rows[("dense", "full")]["flops_per_token"]
    exits = [rows[("layerskip", f"exit-{e}")]["flops_per_token"] for e in (1, 2, 3)]
    assert exits == sorted(exits) and exits[-1] < rows[("layerskip", "full")]["flops_per_token"] == dense
    assert rows[("pause", "pauses-2")]["flops_per_token"] > rows[("pause", "no-pauses")]["flops_per_token"] == dense
    pause_run = load_run(rows[("pause", "no-pauses")]["run_dir"], "last", torch.device("cpu"))
    seed_everything(pause_run.cfg.seed)  # as the trainer does before building the model
    initial = build_model(pause_run.cfg.model, pause_run.tokenizer)
    # the trainer inserted pauses: only pauses in its batches give the pause vector a gradient
    assert not torch.allclose(pause_run.model.pause.vector, initial.pause.vector, atol=1e-4)
    conf = rows[("layerskip", "conf-0.5")]
    assert 1 <= conf["mean_layers"] <= 4 and conf["pairs"] is None
    assert all(0 <= r["pairs"] <= 1 for r in results["rows"] if r["pairs"] is not None)
    table = (s.out / "results.md").read_text()
    assert "| layerskip | exit-2 |" in table and "| pause | pauses-2 |" in table
    assert (s.out / "results.png").stat().st_size > 0
    assert json.loads((s.out / "results.json").read_text())["rows"] == results["rows"]
    again = run_conditional_study(s, echo=lambda line: None)  # trained arms and evaluations reused
    assert again["rows"] == results["rows"]


def test_conditional_study_refuses_unknown_arms_and_seeds(tmp_path, capsys):
    assert main(["study", "conditional", "--models", "dense,moe", "--out", str(tmp_path)]) == 2
    assert "unknown conditional-study arm(s) moe" in capsys.readouterr().err
    assert main(["study", "conditional", "--seeds", "2", "--out", str(tmp_path)]) == 2
    assert "one seed" in capsys.readouterr().err
