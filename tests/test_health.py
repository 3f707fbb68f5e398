"""The health check: a fresh heartbeat and no overdue run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from digest.config import Settings
from digest.daemon import HEARTBEAT_FILE
from digest.errors import DigestError
from digest.health import UnhealthyError, check_health
from digest.store import Store

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
STARTED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path):
    return Settings(DIGEST_DATA_DIR=tmp_path)


def write_heartbeat(
    settings, age: timedelta, running_since=None, started_at=STARTED
) -> None:
    state = {
        "pid": 1,
        "started_at": started_at.isoformat(),
        "schedule": "0 6 * * *",
        "timezone": "UTC",
        "heartbeat_at": (NOW - age).isoformat(),
        "next_run_at": "2026-12-05T06:00:00+00:00",
        "running_since": running_since.isoformat() if running_since else None,
    }
    (settings.data_dir / HEARTBEAT_FILE).write_text(json.dumps(state), "utf-8")


def record_run(settings, day: date) -> None:
    store = Store.open(settings.data_dir)
    store.record_run(day, NOW, NOW)
    store.close()


def test_fresh_heartbeat_and_done_run_is_healthy(settings):
    write_heartbeat(settings, timedelta(seconds=10))
    record_run(settings, date(2026, 12, 4))

    message = check_health(settings, NOW)

    assert message.startswith("healthy: heartbeat 10 s ago")


def test_missing_heartbeat_is_unhealthy(settings):
    with pytest.raises(UnhealthyError, match="no heartbeat; is 'digest run' running"):
        check_health(settings, NOW)


def test_stale_heartbeat_is_unhealthy(settings):
    write_heartbeat(settings, timedelta(minutes=5))
    record_run(settings, date(2026, 12, 4))

    with pytest.raises(UnhealthyError, match="last heartbeat 300 s ago"):
        check_health(settings, NOW)


def test_overdue_run_is_unhealthy(settings):
    write_heartbeat(settings, timedelta(seconds=10))
    record_run(settings, date(2026, 12, 3))

    with pytest.raises(UnhealthyError, match="run of 2026-12-04 overdue"):
        check_health(settings, NOW)


def test_running_or_recent_run_is_healthy(settings):
    write_heartbeat(settings, timedelta(seconds=10), running_since=NOW)
    assert check_health(settings, NOW).startswith("healthy")

    write_heartbeat(settings, timedelta(seconds=10))
    just_due = datetime(2026, 12, 4, 6, 30, tzinfo=UTC)
    assert check_health(settings, just_due).startswith("healthy")


def test_later_completed_run_is_healthy(settings):
    write_heartbeat(settings, timedelta(seconds=10))
    record_run(settings, date(2026, 12, 5))

    assert check_health(settings, NOW).startswith("healthy")


def test_run_due_before_start_is_not_overdue(settings):
    started = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
    write_heartbeat(settings, timedelta(seconds=10), started_at=started)

    assert check_health(settings, NOW).startswith("healthy")


def test_health_command_ignores_config_file(settings, tmp_path):
    (tmp_path / "broken.yaml").write_text("keywords: [", "utf-8")
    now = datetime.now(UTC)
    state = {
        "pid": 1,
        "started_at": now.isoformat(),
        "schedule": "0 6 * * *",
        "timezone": "UTC",
        "heartbeat_at": now.isoformat(),
        "next_run_at": None,
        "running_since": None,
    }
    (tmp_path / HEARTBEAT_FILE).write_text(json.dumps(state), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_CONFIG=str(tmp_path / "broken.yaml"), DIGEST_DATA_DIR=str(tmp_path)
    )

    result = subprocess.run(
        [sys.executable, "-m", "digest", "health"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("healthy: heartbeat")


def test_damaged_heartbeat_is_unhealthy(settings):
    (settings.data_dir / HEARTBEAT_FILE).write_text("{", "utf-8")

    with pytest.raises(DigestError, match="unreadable heartbeat"):
        check_health(settings, NOW)
