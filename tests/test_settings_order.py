"""The two failure detectors' settings: the direct links' heartbeats are meant to suspect a hung
replica before the core's ``failure_timeout_s``; set the other way round, the user is told once
(no Ray session needed: nothing here creates a group)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import pytest

import ftactors
from ftactors.runtime import settings as settings_module


class Worker:
    def step(self) -> int:
        return 1


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing warned about yet in this process."""
    monkeypatch.setattr(settings_module, "_warned", OrderedDict())


def _order_warnings(caplog: pytest.LogCaptureFixture) -> list:
    return [r.getMessage() for r in caplog.records
            if r.name == "ftactors" and r.levelno == logging.WARNING and "failure_timeout_s" in r.getMessage()]


def test_the_defaults_suspect_on_the_link_first_and_warn_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    s = ftactors.load_settings()
    assert s.link_suspicion_s() == pytest.approx(1.25) and s.link_suspicion_s() < s.failure_timeout_s
    assert s.suspicion_order_problem() is None
    assert _order_warnings(caplog) == []


def test_a_failure_timeout_below_the_link_suspicion_is_warned_once_naming_both_settings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    ftactors.replicated(replicas=3, failure_timeout_s=0.5, heartbeat_interval_s=0.25)(Worker)
    ftactors.replicated(replicas=2, failure_timeout_s=0.5, heartbeat_interval_s=0.25)(Worker)  # the same again
    warned = _order_warnings(caplog)
    assert len(warned) == 1, warned
    assert "heartbeat_interval_s=0.25" in warned[0] and "heartbeat_misses_max=4" in warned[0]
    assert "failure_timeout_s=0.5" in warned[0] and "= 1.25 s" in warned[0]


def test_the_chaos_examples_settings_derive_the_heartbeats_and_print_nothing(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    """examples/chaos_target.py sets only heartbeat_s=0.1 and failure_timeout_s=1.0: nothing wrong,
    so nothing printed; the links' heartbeats are derived to suspect a hung replica first."""
    caplog.set_level(logging.WARNING, logger="ftactors")
    cls = ftactors.replicated(replicas=3, style="semi-active", heartbeat_s=0.1, failure_timeout_s=1.0)(Worker)
    s = cls._settings
    assert s.heartbeat_interval_s == pytest.approx(0.125) and s.heartbeat_misses_max == 4
    assert s.link_suspicion_s() < s.failure_timeout_s and s.suspicion_order_problem() is None
    assert _order_warnings(caplog) == []
    assert capsys.readouterr().err == ""


def test_the_example_module_itself_prints_no_settings_warning(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    from ftactors.chaos.campaign import load_campaign

    chaos = load_campaign(Path(__file__).resolve().parent.parent / "examples" / "chaos_target.py")
    assert chaos.target._settings.suspicion_order_problem() is None
    assert [r.getMessage() for r in caplog.records if r.name == "ftactors"] == []
    assert "ftactors settings" not in capsys.readouterr().err


def test_derived_heartbeats_follow_a_changed_failure_timeout_and_explicit_ones_stay(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    cls = ftactors.replicated(replicas=3)(Worker)
    assert cls._settings.heartbeat_interval_s == 0.25  # the default failure_timeout_s: unchanged
    faster = cls.options(failure_timeout_s=0.8)
    assert faster._settings.heartbeat_interval_s == pytest.approx(0.1)  # derived again, not carried over
    assert faster._settings.suspicion_order_problem() is None and _order_warnings(caplog) == []
    pinned = ftactors.replicated(replicas=3, heartbeat_interval_s=0.2)(Worker).options(failure_timeout_s=0.8)
    assert pinned._settings.heartbeat_interval_s == 0.2  # the user's value is kept...
    assert len(_order_warnings(caplog)) == 1  # ...and warned about: 1.0 s is not before 0.8 s


def test_explicit_misses_alone_derive_a_shorter_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    s = ftactors.load_settings(heartbeat_misses_max=9, failure_timeout_s=2.0)
    assert s.heartbeat_interval_s == pytest.approx(0.125) and s.link_suspicion_s() == pytest.approx(1.25)
    assert _order_warnings(caplog) == []


def test_a_settings_file_rebuilt_by_the_actors_keeps_the_derived_interval() -> None:
    s = ftactors.load_settings(failure_timeout_s=1.0, heartbeat_s=0.1)
    rebuilt = settings_module.ReplicationSettings(**s.model_dump())  # what the router and replicas do
    assert rebuilt.heartbeat_interval_s == s.heartbeat_interval_s == pytest.approx(0.125)
    assert rebuilt.link_settings() == s.link_settings()


def test_heartbeats_set_slower_than_the_failure_timeout_are_warned_and_still_accepted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    s = ftactors.load_settings(heartbeat_interval_s=1.0, heartbeat_misses_max=2, failure_timeout_s=3.0)
    assert s.failure_timeout_s == 3.0 and s.core_config().failure_timeout_ticks == 300  # a warning, not an error
    assert len(_order_warnings(caplog)) == 1
    ftactors.load_settings(heartbeat_interval_s=1.0, heartbeat_misses_max=2, failure_timeout_s=2.5)
    assert len(_order_warnings(caplog)) == 2  # another combination: told again


def test_the_ray_data_plane_has_no_link_heartbeats_and_is_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    s = ftactors.load_settings(data_plane="ray", failure_timeout_s=0.5)
    assert s.suspicion_order_problem() is None
    assert _order_warnings(caplog) == []


def test_the_warned_combinations_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ftactors")
    for i in range(settings_module.WARNED_MAX + 5):
        ftactors.load_settings(failure_timeout_s=0.5 + i / 1000, heartbeat_interval_s=0.25)
    assert len(settings_module._warned) == settings_module.WARNED_MAX
    assert len(_order_warnings(caplog)) == settings_module.WARNED_MAX + 5
