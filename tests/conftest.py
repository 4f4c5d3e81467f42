"""Shared test fixtures.

`shared_data("blimp")` (or `require_shared`) returns a path under ../shared/data (or
$STLM_SHARED_DATA). When it is missing the test is skipped with the reason, except under CI=true,
where it fails instead. A test that reads shared data must say so with `@pytest.mark.shared_data`
(a test that does not is failed here), so `pytest -m "not shared_data"` is the self-contained suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STLM_SHARED_DATA", REPO.parent / "shared" / "data"))
_running: list = [None]  # the test being set up or run (module fixtures included)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _running[0] = item


def require_shared(relative: str) -> Path:
    item = _running[0]
    if item is not None and item.get_closest_marker("shared_data") is None:
        pytest.fail(f"{item.nodeid} reads shared data ({relative or '.'}) but is not marked "
                    "@pytest.mark.shared_data")
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"shared data {path} is missing (set STLM_SHARED_DATA or place ../shared/data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def shared_data():
    return require_shared


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread avoids OpenMP barriers, which cost milliseconds on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_data():
    """Overrides for tests that train a few steps: one prepared-data cache for the whole session
    (tiny shakespeare is tokenized once per tokenizer) holding at most 50k training tokens."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="stlm-test-data-"))
    yield [f"data.cache_dir={folder}", "data.max_train_tokens=50000", "data.num_proc=1"]
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
