"""`stlm eval` and `stlm report` end to end on a tiny saved run, and the lm-eval adapter's other
request types (rolling log-likelihood, generation)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import require_shared
from stlm.cli import main
from stlm.config.schema import ModelConfig, RunConfig, SourceConfig, TrainConfig
from stlm.data.grammar import generate_stories
from stlm.models import build_model
from stlm.runs import create_run_dir
from stlm.tokenizers import ByteTokenizer
from stlm.train.checkpoint import save_checkpoint
from stlm.train.optim import build_optimizer


pytestmark = pytest.mark.usefixtures("one_thread")


def make_run(root, name: str, seed: int = 0):
    """A run directory as training leaves it: config.yaml, tokenizer/, one checkpoint. Its data is
    ~40 kB of the built-in grammar corpus as a text file (so `bpb` prepares quickly)."""
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n\n".join(generate_stories(0, 100)))
    cfg = RunConfig(model=ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=128),
                    runs_dir=str(root / "runs"), run_name=name)
    cfg.data.name, cfg.data.sources = "stories", [SourceConfig(name="text", path=str(corpus))]
    cfg.data.tokenizer.kind, cfg.data.val_fraction, cfg.data.cache_dir = "byte", 0.2, str(root / "cache")
    cfg.data.num_proc = 1
    cfg.eval.batch_size = 16
    run = create_run_dir(cfg)
    ByteTokenizer().save(run / "tokenizer")
    torch.manual_seed(seed)
    model = build_model(cfg.model, 257)
    save_checkpoint(run / "checkpoints", 1, model, build_optimizer(model, TrainConfig(), torch.device("cpu")), {})
    return run


@pytest.mark.shared_data
def test_eval_writes_json_table_and_blimp_chart(tmp_path, capsys):
    run = make_run(tmp_path, "tiny")
    data = require_shared("")
    assert main(["eval", str(run), "--tasks", "blimp,winogrande", "--limit", "2", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "| blimp |" in out and "| winogrande |" in out
    blimp = json.loads((run / "eval" / "blimp.json").read_text())
    assert blimp["n"] == 134 and blimp["limit"] == 2 and blimp["checkpoint"] == "step-1"
    assert len(blimp["groups"]["paradigm"]) == 67 and set(blimp["groups"]["field"]) >= {"syntax", "semantics"}
    assert (run / "eval" / "blimp.png").stat().st_size > 10_000
    assert "| winogrande |" in (run / "eval" / "results.md").read_text()


def test_eval_bpb_grammar_and_a_yaml_task_then_report(tmp_path, capsys):
    run_a, run_b = make_run(tmp_path, "a", seed=0), make_run(tmp_path, "b", seed=1)
    (tmp_path / "quiz.jsonl").write_text(json.dumps({"q": "Ice is", "opts": ["cold", "hot"], "gold": 0}) + "\n")
    (tmp_path / "quiz.yaml").write_text("name: quiz\npath: quiz.jsonl\ncontext: '{q}'\nchoices_field: opts\n"
                                        "gold: gold\n")
    for run in (run_a, run_b):
        assert main(["eval", str(run), "--tasks", "bpb,grammar", "--limit", "3",
                     "--task-file", str(tmp_path / "quiz.yaml")]) == 0
    bpb = json.loads((run_a / "eval" / "bpb.json").read_text())
    assert abs(bpb["bpb"] - math.log2(257)) < 0.3  # a random small-init model is near uniform (margin: 8.09 seen)
    assert bpb["data"] == "stories" and bpb["bytes"] > 1000
    grammar = json.loads((run_a / "eval" / "grammar.json").read_text())
    assert 0 <= grammar["acc"] <= 1 and grammar["groups"]["paradigm"]
    assert json.loads((run_a / "eval" / "quiz.json").read_text())["n"] == 1
    capsys.readouterr()
    assert main(["report", str(run_a), str(run_b), "--out", str(tmp_path / "report")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "| task | metric | a | b |"
    assert "| bpb | bpb |" in table and "| quiz | acc |" in table and "| grammar | acc |" in table
    assert (tmp_path / "report" / "report.png").is_file() and (tmp_path / "report" / "report.md").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "nonsense"], "unknown task 'nonsense'"),
    (["--tasks", "blimp", "--limit", "0"], "--limit must be at least 1"),
    (["--tasks", "blimp", "--data-dir", "/no/such/dir"], "data directory /no/such/dir does not exist"),
    (["--tasks", "blimp", "--data", "text"], "--data only applies to the bpb task"),
])
def test_eval_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    run = make_run(tmp_path, "tiny")
    assert main(["eval", str(run), *argv]) == 2
    assert message in capsys.readouterr().err


def test_report_without_results_explains(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "nothing to report" in capsys.readouterr().err


def test_harness_adapter_rolling_and_generation():
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    from stlm.eval.harness import StlmLM
    from stlm.eval.scoring import score_continuations
    from stlm.generate import generate_ids

    assert get_model("stlm") is StlmLM
    torch.manual_seed(0)
    tok = ByteTokenizer()
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=32), 257).eval()
    lm = StlmLM(model=model, tokenizer=tok, batch_size=4)
    short, long = "Hello there.", "A longer text that needs several windows of 32 bytes each to score."
    totals = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), i)
                                       for i, t in enumerate((short, long))])
    ids = tok.encode(long)
    expected = score_continuations(model, [([tok.eot_id], tok.encode(short))])[0].logprob
    windows = [(ids[:s][-32:] if s else [tok.eot_id], ids[s: s + 32]) for s in range(0, len(ids), 32)]
    assert totals[0] == pytest.approx(expected, abs=1e-4)
    assert totals[1] == pytest.approx(sum(s.logprob for s in score_continuations(model, windows)), abs=1e-3)

    greedy = tok.decode(generate_ids(model, [tok.eot_id] + tok.encode("ab"), 12, temperature=0.0))
    cut = greedy[4] if len(greedy) > 4 else "\x00"
    (text,) = lm.generate_until([Instance("generate_until", {}, ("ab", {"until": [cut], "max_gen_toks": 12}), 0)])
    assert text == greedy.split(cut)[0]


def quiz_task(root):
    """A one-question YAML task (needs no data folder)."""
    (root / "quiz.jsonl").write_text(json.dumps({"q": "Ice is", "opts": ["cold", "hot"], "gold": 0}) + "\n")
    (root / "quiz.yaml").write_text("name: quiz\npath: quiz.jsonl\ncontext: '{q}'\nchoices_field: opts\ngold: gold\n")
    return str(root / "quiz.yaml")


def test_eval_to_an_unwritable_run_fails_before_scoring(tmp_path, capsys):
    run = make_run(tmp_path, "ro")
    (run / "eval").write_text("a regular file where the eval folder goes: unwritable, even for root")
    assert main(["eval", str(run), "--tasks", "grammar", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot write evaluation results" in err and "stlm eval: grammar" not in err  # nothing was scored


def test_eval_keeps_results_whose_final_write_fails(tmp_path, capsys):
    run = make_run(tmp_path, "full")
    (run / "eval" / "quiz.json").mkdir(parents=True)  # the folder is writable, this file cannot be replaced
    assert main(["eval", str(run), "--tasks", "grammar,quiz", "--limit", "1", "--task-file", quiz_task(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the quiz results are not lost, they are saved in " in err and "saved before: " in err
    kept = err.split("saved in ")[1].split(";")[0]
    assert json.loads(open(kept).read())["task"] == "quiz"
    assert json.loads((run / "eval" / "grammar.json").read_text())["task"] == "grammar"


def test_results_record_checkpoint_and_limit_and_report_flags_mixtures(tmp_path, capsys):
    run_a, run_b = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=128), 257)
    save_checkpoint(run_a / "checkpoints", 2, model, build_optimizer(model, TrainConfig(), torch.device("cpu")), {})
    quiz = quiz_task(tmp_path)
    assert main(["eval", str(run_a), "--tasks", "grammar", "--limit", "2", "--checkpoint", "step-1"]) == 0
    assert main(["eval", str(run_a), "--tasks", "quiz", "--task-file", quiz, "--checkpoint", "step-2"]) == 0
    err = capsys.readouterr().err
    assert "mixes checkpoints (step-1: grammar; step-2: quiz)" in err
    md = (run_a / "eval" / "results.md").read_text()
    assert "| grammar | seed 10007 | " in md and "| step-1, limit 2 |" in md and "| step-2 |" in md
    assert "different checkpoints" in md
    quiz_json = json.loads((run_a / "eval" / "quiz.json").read_text())
    assert (quiz_json["checkpoint"], quiz_json["step"], quiz_json["limit"]) == ("step-2", 2, None)
    assert quiz_json["context"] == 128 and quiz_json["long_continuations"] == 0

    assert main(["eval", str(run_b), "--tasks", "grammar", "--limit", "3"]) == 0
    capsys.readouterr()
    assert main(["report", str(run_a), str(run_b), "--out", str(tmp_path / "report")]) == 0
    out, err = capsys.readouterr()
    assert "| grammar ⚠ | acc |" in out and "| eval | checkpoint | step-1, step-2 | step-1 |" in out
    assert "| eval | --limit | grammar 2 | grammar 3 |" in out
    assert "grammar: different limit (a 2, b 3)" in err and "a: tasks from different checkpoints" in err
    assert "Not comparable" in (tmp_path / "report" / "report.md").read_text()


def test_eval_progress_shows_items_on_a_terminal_only(tmp_path):
    import io

    from stlm.commands.eval import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, enabled, shown in ((Terminal(), True, True), (Terminal(), False, False), (io.StringIO(), True, False)):
        import sys

        old, sys.stderr = sys.stderr, stream
        try:
            progress = _Progress(enabled)
            show = progress.for_task("blimp")
            if show:
                show(512, 1000)
                show(1000, 1000)
            progress.end()
        finally:
            sys.stderr = old
        assert (stream.getvalue() == "\rstlm eval: blimp 512/1,000 items\rstlm eval: blimp 1,000/1,000 items\n") == shown
        assert bool(stream.getvalue()) == shown


def test_harness_command_fails_fast_offline_with_one_line(tmp_path):
    pytest.importorskip("lm_eval")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: an unreachable hub, deterministically
    proc = subprocess.run([sys.executable, "-m", "stlm.eval.harness", "run", "--model", "stlm", "--model_args",
                           f"run={tmp_path}", "--tasks", "blimp"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "cannot reach the Hugging Face hub" in proc.stderr and "--data-dir" in proc.stderr
