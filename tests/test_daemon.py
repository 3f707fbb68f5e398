"""The daemon: schedule, catch-up, one run at a time, clean stop, one per data dir."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import apscheduler.executors.base
import apscheduler.schedulers.base
import filelock
import pytest
from helpers import (
    VAD,
    digest_env,
    new_paper,
    paper_ids_in,
    run_digest,
    serve,
    write_config,
)

from digest.config import load_settings
from digest.daemon import HEARTBEAT_FILE, Daemon
from digest.health import check_health
from digest.store import LOCK_FILE, Store

BERLIN = ZoneInfo("Europe/Berlin")


class ShiftedClock:
    """The real clock moved to a chosen moment, so it keeps ticking from there."""

    def __init__(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def shifted_clock(monkeypatch):
    """Return a function that moves the daemon's and APScheduler's clock."""

    def shift(moment: datetime) -> ShiftedClock:
        clock = ShiftedClock(moment)

        class ShiftedDatetime(datetime):
            @classmethod
            def now(cls, tz=None):  # noqa: ANN001, ANN206 - datetime's signature
                return clock().astimezone(tz)

        monkeypatch.setattr(apscheduler.schedulers.base, "datetime", ShiftedDatetime)
        monkeypatch.setattr(apscheduler.executors.base, "datetime", ShiftedDatetime)
        return clock

    return shift


@pytest.fixture
def daemon_env(tmp_path, monkeypatch, arxiv_server, reference_papers):
    """Point the settings at the local arXiv server and a data dir in tmp_path."""
    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "subscribers.yaml"))
    monkeypatch.setenv("DIGEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DIGEST_ARXIV_URL", arxiv_server.url)
    monkeypatch.setenv("DIGEST_ARXIV_DELAY", "0")
    serve(arxiv_server, reference_papers)
    return tmp_path


def write_schedule(tmp_path: Path, schedule: str, timezone: str) -> None:
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    with (tmp_path / "subscribers.yaml").open("a", encoding="utf-8") as file:
        file.write(f"schedule: '{schedule}'\ntimezone: {timezone}\n")


def completed_runs(data_dir: Path) -> list[date]:
    store = Store.open(data_dir)
    try:
        return sorted(date.fromisoformat(doc["date"]) for doc in store.runs.all())
    finally:
        store.close()


def record_run(data_dir: Path, day: date) -> None:
    store = Store.open(data_dir)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    store.record_run(day, moment, moment)
    store.close()


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_fires_at_cron_time_in_timezone(daemon_env, shifted_clock):
    write_schedule(daemon_env, "0 6 * * 1-5", "Europe/Berlin")
    data_dir = daemon_env / "data"
    # Friday 2026-12-04, two seconds before 06:00 in Berlin.
    clock = shifted_clock(datetime(2026, 12, 4, 5, 59, 58, tzinfo=BERLIN))
    record_run(data_dir, date(2026, 12, 3))
    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())

    await wait_for(lambda: date(2026, 12, 4) in completed_runs(data_dir))
    fired_at = clock().astimezone(BERLIN)
    daemon.stop()
    await serving

    assert completed_runs(data_dir) == [date(2026, 12, 3), date(2026, 12, 4)]
    assert fired_at.replace(tzinfo=None) >= datetime(2026, 12, 4, 6, 0)
    readme = (data_dir / "README.md").read_text(encoding="utf-8")
    assert "Last update: 2026-12-04\n" in readme


async def test_heartbeat_written_and_removed(daemon_env, shifted_clock):
    write_schedule(daemon_env, "0 6 * * *", "UTC")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    record_run(data_dir, date(2026, 12, 3))
    settings = load_settings()
    daemon = Daemon(settings, clock=clock)
    serving = asyncio.create_task(daemon.serve())

    await wait_for(lambda: (data_dir / HEARTBEAT_FILE).exists())
    healthy = check_health(settings, clock())
    daemon.stop()
    await serving

    assert healthy.startswith("healthy: heartbeat 0 s ago, next run 2026-12-04T06:00")
    assert not (data_dir / HEARTBEAT_FILE).exists()


async def test_catches_up_missed_run_once(daemon_env, shifted_clock, arxiv_server):
    write_schedule(daemon_env, "0 6 * * *", "Europe/Berlin")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 10, 0, tzinfo=BERLIN))

    first = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(first.serve())
    await wait_for(lambda: completed_runs(data_dir) == [date(2026, 12, 4)])
    first.stop()
    await serving
    requests_after_first = len(arxiv_server.requests)

    second = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(second.serve())
    await asyncio.sleep(0.5)
    second.stop()
    await serving

    assert requests_after_first == 1
    assert len(arxiv_server.requests) == requests_after_first
    assert completed_runs(data_dir) == [date(2026, 12, 4)]


async def test_catch_up_uses_latest_fire_date(daemon_env, shifted_clock):
    write_schedule(daemon_env, "0 6 * * *", "Europe/Berlin")
    data_dir = daemon_env / "data"
    # 05:00 on 2026-12-04: the latest fire time was 2026-12-03 at 06:00.
    clock = shifted_clock(datetime(2026, 12, 4, 5, 0, tzinfo=BERLIN))

    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())
    await wait_for(lambda: completed_runs(data_dir) == [date(2026, 12, 3)])
    daemon.stop()
    await serving


async def test_overlapping_trigger_is_skipped(
    daemon_env, shifted_clock, arxiv_server, monkeypatch
):
    write_schedule(daemon_env, "0 6 * * *", "UTC")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    record_run(data_dir, date(2026, 12, 3))
    arxiv_server.fail_next(503, count=2)
    # Two failed requests, with backoff, keep the first run busy for about 1.5 s.
    monkeypatch.setenv("DIGEST_ARXIV_DELAY", "0.5")
    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())
    await asyncio.sleep(0.1)

    await daemon.fire()
    await daemon.fire()
    await wait_for(lambda: date(2026, 12, 4) in completed_runs(data_dir))
    daemon.stop()
    await serving

    assert completed_runs(data_dir) == [date(2026, 12, 3), date(2026, 12, 4)]
    assert len(arxiv_server.requests) == 3


async def test_invalid_edit_keeps_last_config(daemon_env, shifted_clock, caplog):
    write_schedule(daemon_env, "0 6 * * *", "UTC")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    record_run(data_dir, date(2026, 12, 3))
    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())
    await asyncio.sleep(0.1)

    (daemon_env / "subscribers.yaml").write_text("keywords: [unclosed\n", "utf-8")
    await daemon.fire()
    await wait_for(lambda: date(2026, 12, 4) in completed_runs(data_dir))
    daemon.stop()
    await serving

    assert "keeping the last valid configuration" in caplog.text
    assert "## Video Anomaly Detection" in (data_dir / "README.md").read_text("utf-8")


async def test_catch_up_skips_older_date(daemon_env, shifted_clock, arxiv_server):
    write_schedule(daemon_env, "0 6 * * *", "UTC")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 10, 0, tzinfo=UTC))
    record_run(data_dir, date(2026, 12, 5))
    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())

    await asyncio.sleep(0.5)
    daemon.stop()
    await serving

    assert arxiv_server.requests == []
    assert completed_runs(data_dir) == [date(2026, 12, 5)]


async def test_schedule_edit_applies_without_run(daemon_env, shifted_clock):
    write_schedule(daemon_env, "0 6 * * *", "UTC")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    record_run(data_dir, date(2026, 12, 3))
    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())
    await asyncio.sleep(0.1)

    write_schedule(daemon_env, "30 7 * * *", "UTC")
    os.utime(daemon_env / "subscribers.yaml", (1, 1))
    daemon.reload_changed_config()
    job = daemon.scheduler.get_job("daily")
    daemon.stop()
    await serving

    assert (job.next_run_time.hour, job.next_run_time.minute) == (7, 30)


async def test_edited_schedule_is_used(daemon_env, shifted_clock):
    write_schedule(daemon_env, "0 6 * * *", "UTC")
    data_dir = daemon_env / "data"
    clock = shifted_clock(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))
    record_run(data_dir, date(2026, 12, 3))
    daemon = Daemon(load_settings(), clock=clock)
    serving = asyncio.create_task(daemon.serve())
    await asyncio.sleep(0.1)

    write_schedule(daemon_env, "30 7 * * *", "Asia/Tokyo")
    await daemon.fire()
    await wait_for(lambda: date(2026, 12, 4) in completed_runs(data_dir))
    job = daemon.scheduler.get_job("daily")
    daemon.stop()
    await serving

    next_run = job.next_run_time.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (next_run.hour, next_run.minute) == (7, 30)


def start_daemon(tmp_path, arxiv_server, smtp_server, *arguments):
    env = digest_env(
        tmp_path / "subscribers.yaml", tmp_path / "data", arxiv_server.url, smtp_server
    )
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "run", *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_daemon_mails_then_stops_on_sigterm(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    subscribers = [{"email": "alice@example.org"}]
    write_config(tmp_path / "subscribers.yaml", [VAD], subscribers)
    serve(arxiv_server, reference_papers)
    baseline = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-08")
    assert baseline.returncode == 0, baseline.stderr
    fresh = new_paper("2601.09001", "Fresh", reference_papers[VAD][0], 48)
    serve(arxiv_server, {VAD: [fresh, *reference_papers[VAD]]})

    daemon = start_daemon(tmp_path, arxiv_server, smtp_server, "--now")
    try:
        wait_until(lambda: len(smtp_server.messages) == 1)
        time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = daemon.communicate(timeout=10)
    finally:
        daemon.kill()

    assert daemon.returncode == 0, stderr
    assert time.monotonic() - started < 5
    assert "daemon stopped" in stderr
    assert "Traceback" not in stderr
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("alice@example.org",)
    assert paper_ids_in(received.message) == [fresh.versioned_id]


def test_second_daemon_is_refused(
    tmp_path, arxiv_server, smtp_server, reference_papers
):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)
    first = start_daemon(tmp_path, arxiv_server, smtp_server, "--now")
    try:
        wait_until(lambda: (tmp_path / "data" / "README.md").exists())
        second = start_daemon(tmp_path, arxiv_server, smtp_server)
        _, second_stderr = second.communicate(timeout=20)
        first.send_signal(signal.SIGINT)
        _, first_stderr = first.communicate(timeout=10)
    finally:
        first.kill()

    assert second.returncode == 1
    assert "another digest daemon is running" in second_stderr
    assert second_stderr.count("\n") == 1
    assert first.returncode == 0, first_stderr


def test_concurrent_runs_lose_nothing(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD], [{"email": "a@example.org"}])
    serve(arxiv_server, reference_papers)

    env = digest_env(tmp_path / "subscribers.yaml", tmp_path / "data", arxiv_server.url)
    command = [sys.executable, "-m", "digest", "once", "--date", "2026-01-09"]
    processes = [
        subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(p.wait(timeout=30), p.stderr.read()) for p in processes]
    for process in processes:
        process.stderr.close()

    statuses = sorted(status for status, _ in results)
    assert statuses[0] == 0
    for status, stderr in results:
        assert status in (0, 1), stderr
        assert "Traceback" not in stderr
        if status == 1:
            assert "another digest process is using this data directory" in stderr
    store = Store.open(tmp_path / "data")
    assert len(store.papers_of(VAD, limit=100)) == len(reference_papers[VAD])
    store.close()


def test_once_refused_while_locked(tmp_path, arxiv_server, reference_papers):
    write_config(tmp_path / "subscribers.yaml", [VAD], [])
    serve(arxiv_server, reference_papers)
    (tmp_path / "data").mkdir()
    lock = filelock.FileLock(tmp_path / "data" / LOCK_FILE)

    with lock:
        refused = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")
    accepted = run_digest(tmp_path, arxiv_server, "once", "--date", "2026-01-09")

    assert refused.returncode == 1
    assert refused.stderr.endswith(
        "another digest process is using this data directory; "
        "wait for it to finish and try again\n"
    )
    assert len(arxiv_server.requests) == 1
    assert accepted.returncode == 0, accepted.stderr
