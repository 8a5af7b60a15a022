"""`nlc train`'s thread choice: the cores other processes leave free, PASSIVE OpenMP waits only under load."""
import os

from nlc import cli_run


def test_idle_machine_keeps_the_default_wait_policy(monkeypatch):
    monkeypatch.setattr(cli_run, "busy_cores", lambda: 0)
    monkeypatch.setattr(cli_run, "_cores", lambda: 2)
    monkeypatch.setenv("OMP_WAIT_POLICY", "x")  # recorded, so teardown restores the original
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert cli_run.default_threads(2) == 2
    cli_run._threads(type("A", (), {"threads": 1})())
    assert "OMP_WAIT_POLICY" not in os.environ


def test_busy_machine_sleeps_and_takes_the_free_cores(monkeypatch):
    monkeypatch.setattr(cli_run, "busy_cores", lambda: 1)
    monkeypatch.setattr(cli_run, "_cores", lambda: 2)
    monkeypatch.setenv("OMP_WAIT_POLICY", "x")  # recorded, so teardown restores the original
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert cli_run.default_threads(2) == 1
    monkeypatch.setattr(cli_run, "busy_cores", lambda: 5)
    assert cli_run.default_threads(2) == 1  # at least one
    cli_run._threads(type("A", (), {"threads": 1})())
    assert os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"
