"""The CPU threading policy chosen at `import stlm`: the user's setting wins; otherwise PASSIVE
unless no other process is runnable."""

from stlm import _threads


def test_user_setting_wins():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert _threads.choose_wait_policy(env) == "user setting" and env["OMP_WAIT_POLICY"] == "ACTIVE"
    env = {"GOMP_SPINCOUNT": "10000"}
    _threads.choose_wait_policy(env)
    assert "OMP_WAIT_POLICY" not in env


def test_busy_or_unknown_load_waits_passively_and_idle_spins(monkeypatch):
    monkeypatch.setattr(_threads, "other_runnable", lambda: 3.0)
    env = {}
    assert _threads.choose_wait_policy(env).startswith("passive (busy")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env[_threads.CHOICE_VAR].startswith("passive")
    monkeypatch.setattr(_threads, "other_runnable", lambda: None)
    env = {}
    assert _threads.choose_wait_policy(env) == "passive (load unknown)" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setattr(_threads, "other_runnable", lambda: 0.0)
    env = {}
    assert _threads.choose_wait_policy(env) == "spin (idle at start)" and "OMP_WAIT_POLICY" not in env


def test_runnable_count_is_read_from_proc_stat():
    others = _threads.other_runnable(samples=2, interval_s=0.0)
    assert others is None or others >= 0
