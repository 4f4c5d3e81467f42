"""Atomic writes: the target holds the old content or the whole new one, and no temporary file is
left behind, whether the write succeeds or fails half-way."""

from __future__ import annotations

import pytest

from stlm.fileio import atomic_output, write_atomic


def test_write_atomic_replaces_the_whole_file(tmp_path):
    target = tmp_path / "config.yaml"
    write_atomic(target, "old: 1\n")
    write_atomic(target, b"new: 2\n")
    assert target.read_text() == "new: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    write_atomic(target, "{}")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_temporary_name_matches_the_leftover_pattern(tmp_path):
    """Checkpoint pruning removes `.tmp-*` leftovers; a crashed write must match that pattern."""
    with atomic_output(tmp_path / "best") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-best")
        tmp.write_text("x")
