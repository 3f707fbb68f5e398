"""The daemon: run the daily job on a crontab schedule until SIGTERM or SIGINT.

APScheduler's AsyncIOScheduler fires the job. The run itself is blocking work,
because the arXiv client sleeps between requests, so it goes to a worker thread
and the event loop stays free to take signals. One run happens at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import filelock
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import DigestConfig, Settings, load_config
from .daily import RunOptions, run_daily, utc_now
from .errors import ConfigError, DigestError, StoreError
from .schedule import digest_date
from .store import PUBLISHED_FILE_MODE, Store, write_atomically

logger = logging.getLogger(__name__)

DAEMON_LOCK_FILE = ".daemon.lock"

# The daemon rewrites this file every HEARTBEAT_INTERVAL_S for `digest health`.
HEARTBEAT_FILE = "daemon.json"
HEARTBEAT_INTERVAL_S = 30.0

# A scheduled run waits this long for a manual run that holds the store's lock.
LOCK_WAIT_S = 1800.0

# A fire time missed by less than this, e.g. while the loop was busy, still runs.
MISFIRE_GRACE_S = 3600


@contextlib.contextmanager
def daemon_lock(data_dir: Path) -> Iterator[None]:
    """Hold the lock that allows one daemon per data directory, or raise StoreError."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(data_dir / DAEMON_LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise StoreError(
            f"{data_dir}: another digest daemon is running on this data directory"
        ) from None
    try:
        yield
    finally:
        lock.release()


class Daemon:
    """Schedules daily runs and runs them one at a time until stopped.

    A run that is still going when the next one is due makes the next one skip.
    """

    def __init__(
        self,
        settings: Settings,
        run_now: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.run_now = run_now
        self.clock = clock
        self.config = load_config(settings.config_path)
        self.stop_requested = threading.Event()
        self.stopped = asyncio.Event()
        self.runs: set[asyncio.Task[None]] = set()
        self.scheduler: AsyncIOScheduler | None = None
        self.running_since: datetime | None = None
        self.started_at = clock()
        self.config_mtime = self.read_config_mtime()

    async def serve(self) -> None:
        """Run until stop() is called; raises StoreError if another daemon runs."""
        with daemon_lock(self.settings.data_dir):
            self.scheduler = AsyncIOScheduler(timezone=self.config.zone)
            self.scheduler.add_job(
                self.fire,
                trigger=self.config.trigger(),
                id="daily",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=MISFIRE_GRACE_S,
            )
            self.scheduler.start()
            logger.info(
                "daemon started: schedule %r in %s, data in %s",
                self.config.schedule,
                self.config.timezone,
                self.settings.data_dir,
            )
            self.log_next_run()
            self.start_up_run()
            heartbeat = asyncio.get_running_loop().create_task(self.beat())

            await self.stopped.wait()
            self.scheduler.shutdown(wait=False)
            if self.runs:
                logger.info("waiting for the current run to stop")
                await asyncio.gather(*self.runs, return_exceptions=True)
            heartbeat.cancel()
            (self.settings.data_dir / HEARTBEAT_FILE).unlink(missing_ok=True)
        logger.info("daemon stopped")

    async def beat(self) -> None:
        """Write the heartbeat file now and every HEARTBEAT_INTERVAL_S seconds.

        A configuration file that changed since the last beat is read again, so
        a new schedule applies within one interval.
        """
        while True:
            self.reload_changed_config()
            self.write_heartbeat()
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    def reload_changed_config(self) -> None:
        """Read the configuration again if its file changed, unless a run is going."""
        if self.read_config_mtime() != self.config_mtime and not self.runs:
            self.reload_config()
            self.log_next_run()

    def read_config_mtime(self) -> float | None:
        """Return when the configuration file last changed, None if unreadable."""
        try:
            return self.settings.config_path.stat().st_mtime
        except OSError:
            return None

    def write_heartbeat(self) -> None:
        """Record that the scheduler is alive, its next run and any current run."""
        assert self.scheduler is not None
        job = self.scheduler.get_job("daily")
        next_run = job.next_run_time if job is not None else None
        state = {
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(),
            "schedule": self.config.schedule,
            "timezone": self.config.timezone,
            "heartbeat_at": self.clock().isoformat(),
            "next_run_at": next_run.isoformat() if next_run else None,
            "running_since": (
                self.running_since.isoformat() if self.running_since else None
            ),
        }
        try:
            write_atomically(
                self.settings.data_dir / HEARTBEAT_FILE,
                json.dumps(state),
                PUBLISHED_FILE_MODE,
            )
        except OSError as error:
            logger.error("cannot write the heartbeat file: %s", error)

    def stop(self) -> None:
        """Ask the daemon to stop: no new work, the current mail finishes."""
        if not self.stopped.is_set():
            logger.info("stop requested")
        self.stop_requested.set()
        self.stopped.set()

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self.stop)

    def log_next_run(self) -> None:
        """Log when the scheduled job fires next."""
        assert self.scheduler is not None
        job = self.scheduler.get_job("daily")
        if job is not None and job.next_run_time is not None:
            logger.info("next run at %s", job.next_run_time.isoformat())

    def start_up_run(self) -> None:
        """Run today with --now, or catch up the latest missed scheduled run."""
        today = digest_date(self.clock(), self.config.zone)
        if self.run_now:
            self.start_run(today, "requested with --now")
            return
        missed = self.missed_date()
        if missed is not None:
            self.start_run(missed, "catching up a missed scheduled run")

    def missed_date(self) -> date | None:
        """Return the date of the latest scheduled run if no run of it, or of a
        later date, has completed."""
        latest = self.config.trigger().previous_fire_time(self.clock())
        if latest is None:
            return None
        day = digest_date(latest, self.config.zone)
        store = Store.open(self.settings.data_dir)
        try:
            completed = store.latest_completed_run()
        finally:
            store.close()
        return None if completed is not None and completed >= day else day

    async def fire(self) -> None:
        """Run the job for today's date; called by the scheduler."""
        today = digest_date(self.clock(), self.config.zone)
        self.start_run(today, "scheduled")

    def start_run(self, day: date, reason: str) -> None:
        """Start a run in the background unless one is already going."""
        if self.runs:
            logger.warning("run of %s skipped: the previous run is still going", day)
            return
        task = asyncio.get_running_loop().create_task(self.run(day, reason))
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)

    async def run(self, day: date, reason: str) -> None:
        """Reload the configuration and do one daily run in a worker thread."""
        if self.stop_requested.is_set():
            return
        self.reload_config()
        logger.info("run of %s started (%s)", day, reason)
        options = RunOptions(lock_wait_s=LOCK_WAIT_S, stop=self.stop_requested)
        self.running_since = self.clock()
        self.write_heartbeat()
        try:
            report = await asyncio.to_thread(
                run_daily, self.config, self.settings, day, options
            )
        except DigestError as error:
            logger.error("run of %s failed: %s", day, error)
            return
        except Exception:
            # The daemon outlives a failed run; the next schedule may succeed.
            logger.exception("run of %s failed unexpectedly", day)
            return
        finally:
            self.running_since = None
            self.write_heartbeat()
        logger.info("%s", report.summary())
        if not self.stop_requested.is_set():
            self.log_next_run()

    def reload_config(self) -> None:
        """Read the configuration again, keeping the last valid one on error."""
        self.config_mtime = self.read_config_mtime()
        try:
            config = load_config(self.settings.config_path)
        except ConfigError as error:
            logger.error("%s; keeping the last valid configuration", error)
            return
        if self.scheduler is not None and self.schedule_changed(config):
            self.scheduler.reschedule_job("daily", trigger=config.trigger())
            logger.info(
                "schedule changed to %r in %s", config.schedule, config.timezone
            )
        self.config = config

    def schedule_changed(self, config: DigestConfig) -> bool:
        """Return whether config changes the schedule or its timezone."""
        current = (self.config.schedule, self.config.timezone)
        return (config.schedule, config.timezone) != current
