"""Where local data comes from: --data-dir, then $STLM_DATA_DIR, then the user cache folder; a
missing folder says the three ways to provide it; nothing user-facing names the developers' layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from stlm.cli import main
from stlm.datadir import data_dir, user_data_dir
from stlm.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("STLM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_flag_then_variable_then_user_cache(home, monkeypatch):
    assert user_data_dir() == home / "cache" / "stlm" / "data"
    assert data_dir(None) is None  # nothing anywhere: evaluation falls back to the hub
    user_data_dir().mkdir(parents=True)
    assert data_dir(None) == user_data_dir()
    (home / "env").mkdir()
    monkeypatch.setenv("STLM_DATA_DIR", str(home / "env"))
    assert data_dir(None) == home / "env"
    (home / "flag").mkdir()
    assert data_dir(str(home / "flag")) == home / "flag"
    with pytest.raises(UserError, match=r"/nope does not exist \(from --data-dir\)"):
        data_dir(str(home / "nope"))


def test_study_without_data_names_the_three_ways(home, capsys):
    assert main(["study", "sllama", "--out", str(home / "out")]) == 2
    err = capsys.readouterr().err
    assert "--data-dir DIR" in err and "$STLM_DATA_DIR" in err and str(user_data_dir()) in err
    assert "docs/data.md" in err and "Traceback" not in err


def test_help_and_sources_do_not_name_the_development_layout(capsys):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = capsys.readouterr().out
    assert "issue" not in text.lower() and "shared/data" not in text
    leaks = [f"{p.relative_to(SRC)}: {line.strip()}" for p in SRC.rglob("*.py")
             for line in p.read_text(encoding="utf-8").splitlines()
             if "shared/data" in line or '"shared" / "data"' in line or "(issue " in line]
    assert not leaks, "\n".join(leaks)
