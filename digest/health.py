"""The health check of a running daemon, for container orchestrators.

Healthy means: the daemon's heartbeat file is fresh, so its event loop and
scheduler are alive, and the latest scheduled run has completed, or is running,
or was due less than an hour ago.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .config import Settings
from .daemon import HEARTBEAT_FILE, HEARTBEAT_INTERVAL_S
from .errors import DigestError
from .schedule import CrontabTrigger, digest_date
from .store import Store

# A heartbeat older than three intervals means the event loop is stuck or gone.
STALE_AFTER = timedelta(seconds=3 * HEARTBEAT_INTERVAL_S)

# Time a scheduled run may take before it counts as overdue.
OVERDUE_AFTER = timedelta(hours=1)


class UnhealthyError(DigestError):
    """The daemon is not running, stuck, or behind its schedule."""


def read_heartbeat(settings: Settings) -> dict[str, Any]:
    """Return the daemon's heartbeat, or raise UnhealthyError."""
    path = settings.data_dir / HEARTBEAT_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        datetime.fromisoformat(state["heartbeat_at"])
        datetime.fromisoformat(state["started_at"])
        CrontabTrigger(state["schedule"], ZoneInfo(state["timezone"]))
    except FileNotFoundError:
        raise UnhealthyError(
            f"{path}: no heartbeat; is 'digest run' running?"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UnhealthyError(f"{path}: unreadable heartbeat: {error}") from None
    return dict(state)


def check_health(settings: Settings, now: datetime) -> str:
    """Return a one-line description of a healthy daemon, or raise UnhealthyError.

    The schedule comes from the heartbeat, so the check judges the daemon by
    the configuration it runs with, even while the file has an invalid edit.
    """
    state = read_heartbeat(settings)
    age = now - datetime.fromisoformat(state["heartbeat_at"])
    if age > STALE_AFTER:
        raise UnhealthyError(
            f"scheduler not running: last heartbeat {age.total_seconds():.0f} s ago"
        )

    zone = ZoneInfo(state["timezone"])
    latest = CrontabTrigger(state["schedule"], zone).previous_fire_time(now)
    started_at = datetime.fromisoformat(state["started_at"])
    # A run due before the daemon started was caught up or replaced by --now.
    is_due = latest is not None and latest > started_at
    if is_due and latest is not None and now - latest > OVERDUE_AFTER:
        day = digest_date(latest, zone)
        completed = latest_completed_run(settings)
        is_done = completed is not None and completed >= day
        if state.get("running_since") is None and not is_done:
            raise UnhealthyError(
                f"run of {day.isoformat()} overdue: due at {latest.isoformat()}, "
                "not completed; see the daemon's log"
            )
    seconds = age.total_seconds()
    return f"healthy: heartbeat {seconds:.0f} s ago, next run {state['next_run_at']}"


def latest_completed_run(settings: Settings) -> date | None:
    """Return the latest date whose daily run completed, from the store."""
    store = Store.open(settings.data_dir)
    try:
        return store.latest_completed_run()
    finally:
        store.close()
