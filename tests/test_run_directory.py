"""What a run directory guarantees (docs/run_directory.md), each tried the way it breaks:
one process at a time (a real second process, a real SIGKILL), a damaged config.yaml refused
with nothing changed, flipped weight bytes caught by checksums, a folder without a checkpoint
neither stuck nor resumable by mistake, a full disk mid-checkpoint, an unwritable folder (for
root too), a finite loss blow-up, the minutes cap, and extending a finished run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from stlm.cli import main
from stlm.config import compose_config
from stlm.errors import UserError
from stlm.runs import load_run, lock_run_dir
from stlm.train import Trainer, TrainingDiverged, run_training
from stlm.train import checkpoint as ckpt
from stlm.train.metrics import read_metrics
from stlm.train.resume import resume_config
from test_train_loop import tiny_overrides

pytestmark = pytest.mark.slow  # end-to-end: each test trains or resumes a tiny run

SRC = str(Path(__file__).resolve().parents[1] / "src")
QUIET = lambda s: None  # noqa: E731
FINISHED = ("train.max_steps=20", "train.checkpoint_every=10", "train.eval_every=10")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("rundir")


@pytest.fixture(scope="module")
def finished(root):
    """A finished 20-step run with checkpoints step-10 and step-20 (never modified: copy it)."""
    run_training(compose_config(tiny_overrides(root, "finished", *FINISHED)), echo=QUIET)
    return root / "runs" / "finished"


@pytest.fixture
def run_copy(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file aside: it only names its last holder)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def cli_error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------
# 2. A damaged config.yaml
# ---------------------------------------------------------------------------------------------


def _drop_section(text: str, section: str) -> str:
    lines, out, skipping = text.splitlines(keepends=True), [], False
    for line in lines:
        if not line.startswith(" "):
            skipping = line.startswith(f"{section}:")
        if not skipping:
            out.append(line)
    return "".join(out)


DAMAGE = {
    "a section missing": (lambda t: _drop_section(t, "train").encode(), "train (missing)"),
    "a key missing": (lambda t: t.replace("  lr: 0.01\n", "").encode(), "train.lr (missing)"),
    "an empty section": (lambda t: _drop_section(t, "model").replace("data:", "model:\ndata:", 1).encode(),
                         "model (empty)"),
    "an empty file": (lambda t: b"", "is empty"),
    "not text": (lambda t: b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)), "is not text"),
    "not a mapping": (lambda t: b"- model\n- train\n", "is a list, not a mapping"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_config_is_refused_and_nothing_changes(run_copy, damage, capsys):
    make, expected = DAMAGE[damage]
    config = run_copy / "config.yaml"
    config.write_bytes(make(config.read_text()))
    before = snapshot(run_copy)
    err = cli_error(["train", f"resume={run_copy}", "train.max_steps=30"], capsys)
    assert "config.yaml" in err and expected in err, err
    assert snapshot(run_copy) == before  # config.yaml, metrics.jsonl, checkpoints: byte for byte
    with pytest.raises(UserError, match="config.yaml"):
        load_run(run_copy)


def test_a_config_from_before_the_later_keys_still_loads(run_copy):
    from stlm.runs import read_config

    config = run_copy / "config.yaml"
    text = config.read_text()
    for line in ("  continue_schedule: restart\n", "  diverge_factor: 3.0\n"):
        assert line in text
        text = text.replace(line, "")
    config.write_text(text)
    cfg = read_config(run_copy)  # LATER_KEYS take their defaults; nothing else may be missing
    assert (cfg.train.continue_schedule, cfg.train.diverge_factor) == ("restart", 3.0)


# ---------------------------------------------------------------------------------------------
# 3. Checksums
# ---------------------------------------------------------------------------------------------


def flip_weight_bytes(path: Path) -> None:
    """Flip bytes in the middle of the tensor data (after the safetensors header), so the file
    still parses and only the numbers change."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    middle = header + (len(data) - header) // 2
    for i in range(middle, middle + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_weight_bytes_are_refused_naming_the_file_and_the_older_checkpoint(run_copy, capsys):
    corrupt = run_copy / "checkpoints" / "step-20" / ckpt.MODEL_FILE
    flip_weight_bytes(corrupt)
    before = snapshot(run_copy)
    err = cli_error(["train", f"resume={run_copy}", "train.max_steps=30"], capsys)
    assert f"{corrupt} is corrupt" in err and "step-10" in err, err
    assert snapshot(run_copy) == before
    with pytest.raises(UserError, match=f"{corrupt} is corrupt.*older checkpoint .*step-10"):
        load_run(run_copy, which="last")
    assert load_run(run_copy, which="step-10").step == 10  # the older one loads


def test_flipped_optimizer_state_bytes_are_refused(run_copy):
    flip_weight_bytes(run_copy / "checkpoints" / "step-20" / ckpt.STATE_FILE)
    with pytest.raises(UserError, match=r"trainer.safetensors is corrupt"):
        run_training(resume_config(run_copy, ["train.max_steps=30"]), echo=QUIET)


# ---------------------------------------------------------------------------------------------
# 1. One process per run directory; 5. a folder without a checkpoint (4: test_config_rules.py)
# ---------------------------------------------------------------------------------------------


def test_a_second_process_is_refused_and_a_run_killed_before_its_first_checkpoint_restarts(root, capsys):
    """A real training process holds the folder: a second one is refused, naming its pid. Killed
    (SIGKILL) before its first checkpoint, it blocks nothing: resume= says how to proceed, and a
    fresh run under the same run_name reuses the folder."""
    overrides = tiny_overrides(root, "early", "train.max_steps=100000", "train.checkpoint_every=100000",
                               "train.eval_every=100000")
    run_dir = root / "runs" / "early"
    proc = subprocess.Popen([sys.executable, "-m", "stlm.cli", "train", *overrides],
                            env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not ((run_dir / "metrics.jsonl").exists() and read_metrics(run_dir / "metrics.jsonl")):
            assert time.time() < deadline and proc.poll() is None, "training never logged a step"
            time.sleep(0.02)
        err = cli_error(["train", *overrides], capsys)
        assert f"is in use by process {proc.pid}" in err, err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not ckpt.step_dirs(run_dir / "checkpoints")
    err = cli_error(["train", f"resume={run_dir}"], capsys)
    assert "no checkpoint yet" in err and "run_name=early" in err
    notes = []
    summary = run_training(compose_config(tiny_overrides(root, "early", "train.max_steps=10")), echo=notes.append)
    assert summary["steps"] == 10 and any("reusing" in n for n in notes)
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == list(range(1, 11))  # no stale lines


def test_a_locked_run_refuses_a_resume_and_changes_nothing(run_copy, capsys):
    lock = lock_run_dir(run_copy)  # as a second process would find it (flock is per open file)
    try:
        with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
            lock_run_dir(run_copy)
        before = snapshot(run_copy)
        err = cli_error(["train", f"resume={run_copy}", "train.max_steps=30"], capsys)
        assert f"is in use by process {os.getpid()}" in err
        assert snapshot(run_copy) == before
    finally:
        lock.release()
    lock_run_dir(run_copy).release()  # released: free again


def test_a_config_error_after_the_folder_was_made_leaves_no_folder(tmp_path):
    cfg = compose_config(tiny_overrides(tmp_path, "small-vocab", "model.vocab_size=100"))  # < 257 bytes
    with pytest.raises(UserError, match="cannot build the model"):
        run_training(cfg, echo=QUIET)
    assert not (tmp_path / "runs" / "small-vocab").exists()


def test_a_folder_with_a_checkpoint_or_foreign_files_is_not_reused(finished, tmp_path):
    with pytest.raises(UserError, match="resume="):
        run_training(compose_config(tiny_overrides(finished.parents[1], "finished")), echo=QUIET)
    foreign = tmp_path / "runs" / "mine"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a run directory.*notes.txt"):
        run_training(compose_config(tiny_overrides(tmp_path, "mine")), echo=QUIET)
    assert (foreign / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# 6. A finite blow-up; the time of a resumed run
# ---------------------------------------------------------------------------------------------


def test_a_finite_loss_blow_up_stops_and_is_never_marked_best(root):
    from stlm.data import prepare_data
    from stlm.runs import create_run_dir

    cfg = compose_config(tiny_overrides(root, "blowup", "train.checkpoint_every=10", "train.eval_every=10"))
    run_dir = create_run_dir(cfg)
    trainer = Trainer(cfg, run_dir, prepare_data(cfg.data, progress=False))
    calls = {"n": 0}

    def blow_up(module, inputs, output):  # from the 26th training step on, the loss x 10: finite
        calls["n"] += module.training and output.loss is not None
        if calls["n"] > 25 and output.loss is not None:
            output.loss, output.lm_loss = output.loss * 10.0, output.lm_loss * 10.0
        return output

    trainer.model.register_forward_hook(blow_up)
    with pytest.raises(TrainingDiverged, match=r"training loss is .* at step 26, more than train.diverge_factor=3"):
        trainer.fit()
    assert ckpt.latest_checkpoint(run_dir / "checkpoints").name == "step-20"
    best = ckpt.best_checkpoint(run_dir / "checkpoints").name
    trainer.save(val_loss=1796.0)  # a checkpoint far above the start is written but never best
    assert ckpt.best_checkpoint(run_dir / "checkpoints").name == best


def test_a_resumed_run_reports_a_total_time_no_smaller_than_its_training_time(run_copy):
    meta_path = run_copy / "checkpoints" / "step-20" / ckpt.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["elapsed_s"] = 100.0  # a long first session (within the 4-minute cap of train=quickstart)
    meta_path.write_text(json.dumps(meta))
    summary = run_training(resume_config(run_copy, ["train.max_steps=22"]), echo=QUIET)
    assert summary["steps"] == 22 and summary["train_seconds"] > 100
    assert summary["total_seconds"] >= summary["train_seconds"]


# ---------------------------------------------------------------------------------------------
# 7. The minutes cap on a step budget; 8. extending a finished run
# ---------------------------------------------------------------------------------------------


def test_the_minutes_cap_says_so_and_still_anneals(root):
    lines = []
    cfg = compose_config(tiny_overrides(root, "capped", "train.max_steps=100000", "train.max_minutes=0.02",
                                        "train.eval_every=100000", "train.checkpoint_every=100000"))
    summary = run_training(cfg, echo=lines.append)
    assert summary["planned_steps"] == 100000 and summary["steps"] < 100000
    assert f"after {summary['steps']:,} of 100,000 planned steps" in summary["cut_short"]
    saved = json.loads((root / "runs" / "capped" / "summary.json").read_text())
    assert saved["cut_short"] == summary["cut_short"]
    assert "of 100,000 planned steps" in lines[-1] and "warning" in lines[-1]
    records = read_metrics(root / "runs" / "capped" / "metrics.jsonl")
    assert records[-1]["lr"] < 0.3 * cfg.train.lr  # annealed by time (step-based: still ~peak)


def test_extending_a_finished_run_warns_or_holds_min_lr(finished, tmp_path):
    restart, extend = tmp_path / "restart", tmp_path / "extend"
    shutil.copytree(finished, restart)
    shutil.copytree(finished, extend)
    notes = []
    run_training(resume_config(restart, ["train.max_steps=30"]), echo=notes.append)
    assert any(n.startswith("warning:") and "rises again" in n and "continue_schedule=extend" in n
               for n in notes), notes
    min_lr = compose_config(tiny_overrides(tmp_path, "x")).train.min_lr
    later = [r["lr"] for r in read_metrics(restart / "metrics.jsonl") if r["step"] > 20]
    assert len(later) == 10 and later[0] > 2 * min_lr  # restarted upward, as the warning says

    notes = []
    run_training(resume_config(extend, ["train.max_steps=30", "train.continue_schedule=extend"]),
                 echo=notes.append)
    assert any("holds min_lr" in n for n in notes), notes
    later = [r["lr"] for r in read_metrics(extend / "metrics.jsonl") if r["step"] > 20]
    assert later == [min_lr] * 10


# ---------------------------------------------------------------------------------------------
# 9. A full disk, an unwritable folder
# ---------------------------------------------------------------------------------------------


def test_a_full_disk_mid_checkpoint_keeps_nothing_half_written(root, monkeypatch):
    real_save_file = ckpt.save_file
    calls = {"n": 0}

    def full_disk(tensors, filename, *args, **kwargs):  # the second checkpoint's optimizer file
        calls["n"] += 1
        if calls["n"] == 2:
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    cfg = compose_config(tiny_overrides(root, "full", *FINISHED))
    with pytest.raises(UserError, match=r"cannot write checkpoint .*step-20 \(No space left on device\).*"
                                        r"last complete checkpoint is .*step-10"):
        run_training(cfg, echo=QUIET)
    ckpts = root / "runs" / "full" / "checkpoints"
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(("step-", ".tmp"))] == ["step-10"]
    load_run(ckpts.parent, which="last")  # what is left loads


@contextmanager
def unwritable(folder: Path):
    """Make `folder` refuse new files for this process, as root too: chmod for a normal user;
    for root, whom permission bits do not stop, the immutable attribute (chattr +i)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    else:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                            capture_output=True).returncode != 0:
            pytest.skip("cannot make a folder read-only for root here (chattr +i unavailable)")
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip(f"{folder} stays writable for this process")
        yield
    finally:
        undo()


def test_resuming_in_an_unwritable_run_directory_fails_first_and_changes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    with unwritable(run_copy):
        err = cli_error(["train", f"resume={run_copy}", "train.max_steps=30"], capsys)
    assert f"cannot write in {run_copy}" in err
    assert snapshot(run_copy) == before


def test_an_unwritable_data_cache_is_one_line(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    with unwritable(cache):
        err = cli_error(["train", *tiny_overrides(tmp_path, "nocache")], capsys)
    assert f"cannot write prepared data to {cache}" in err and "data.cache_dir=" in err
    assert not (tmp_path / "runs" / "nocache").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    err = cli_error(["prepare", *tiny_overrides(blocker, "x")], capsys)  # the cache under a file
    assert "cannot write prepared data to" in err and "is a file, not a folder" in err
