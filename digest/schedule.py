"""Crontab schedules for the daemon, with crontab(5) meanings kept exact.

APScheduler's CronTrigger differs from crontab(5) in three ways that matter
here, each corrected in CrontabTrigger:
- its day-of-week numbers start at 0 = Monday, while crontab's 0 and 7 are
  Sunday, so the field is rewritten as day names;
- it requires both day of month and day of week to match, while crontab fires
  when either matches if both are restricted;
- at the end of daylight saving time it can fire twice for the repeated hour,
  and the second fire time is dropped here.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# Windows previous_fire_time searches, smallest first, so that a schedule firing
# every minute needs few steps; a yearly schedule fires within the last one.
LOOKBACK_WINDOWS = (
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=366),
)

WEEKDAY_ITEM = re.compile(
    r"^(?P<start>\*|[0-7]|[a-z]{3})(?:-(?P<end>[0-7]|[a-z]{3}))?(?:/(?P<step>\d+))?$"
)


def weekday_number(value: str, is_range_end: bool = False) -> int:
    """Return the crontab day number (0-7, Sunday is 0 and 7) of a number or name.

    A range ending in "sun" ends at 7, so that "sat-sun" reads as crontab means it.
    """
    if value.isdigit():
        return int(value)
    if value not in DAY_NAMES:
        raise ValueError(f"invalid day of week {value!r}")
    number = DAY_NAMES.index(value)
    return 7 if is_range_end and number == 0 else number


def expand_weekdays(field: str) -> set[int]:
    """Return the days (0-6, Sunday is 0) that a crontab day-of-week field selects."""
    days: set[int] = set()
    for item in field.lower().split(","):
        match = WEEKDAY_ITEM.match(item)
        if match is None:
            raise ValueError(f"invalid day-of-week field {field!r}")
        start, end, step = match["start"], match["end"], match["step"]

        first = 0 if start == "*" else weekday_number(start)
        if end is not None:
            # "sun-sun" is Sunday alone, while "sat-sun" ends on day 7.
            last = weekday_number(end, is_range_end=first != 0)
        elif start == "*" or step is not None:
            last = 7
        else:
            last = first
        if last < first or last > 7 or int(step or 1) < 1:
            raise ValueError(f"invalid item {item!r} in day-of-week field")

        days.update(day % 7 for day in range(first, last + 1, int(step or 1)))
    return days


def crontab_to_triggers(expression: str, timezone: ZoneInfo) -> list[CronTrigger]:
    """Translate a five-field crontab expression into APScheduler triggers."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 6 * * *'"
        )
    minute, hour, day, month, weekday = fields
    try:
        names = ",".join(DAY_NAMES[d] for d in sorted(expand_weekdays(weekday)))
        common = {"minute": minute, "hour": hour, "month": month, "timezone": timezone}
        if day.startswith("*") or weekday.startswith("*"):
            # One restriction, or none: both fields must match, as APScheduler does.
            return [CronTrigger(day=day, day_of_week=names, **common)]
        # Both restricted: crontab(5) fires on either.
        return [
            CronTrigger(day=day, day_of_week="*", **common),
            CronTrigger(day="*", day_of_week=names, **common),
        ]
    except ValueError as error:
        raise ValueError(f"invalid cron expression {expression!r}: {error}") from None


# APScheduler 3 ships no type information, so its base class is Any to mypy.
class CrontabTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger with the meaning of a crontab(5) line."""

    def __init__(self, expression: str, timezone: ZoneInfo) -> None:
        self.expression = expression
        self.timezone = timezone
        self.triggers = crontab_to_triggers(expression, timezone)

    def __str__(self) -> str:
        return f"cron[{self.expression}, {self.timezone.key}]"

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """Return the first fire time at or after now, never a repeated wall time."""
        candidates: list[datetime | None] = [
            t.get_next_fire_time(previous_fire_time, now) for t in self.triggers
        ]
        found = [c for c in candidates if c is not None]
        if not found:
            return None
        fire_time = min(found)
        if previous_fire_time is not None and self._repeats(
            previous_fire_time, fire_time
        ):
            # The clock went back an hour: skip the hour that is shown twice.
            return self.get_next_fire_time(None, fire_time + timedelta(hours=1))
        return fire_time

    def _repeats(self, previous: datetime, candidate: datetime) -> bool:
        """Return whether candidate is not after previous, or shows its wall time."""
        local_previous = previous.astimezone(self.timezone).replace(tzinfo=None)
        local_candidate = candidate.astimezone(self.timezone).replace(tzinfo=None)
        return candidate <= previous or local_candidate == local_previous

    def previous_fire_time(self, now: datetime) -> datetime | None:
        """Return the last fire time at or before now, within the last year."""
        for window in LOOKBACK_WINDOWS:
            latest = None
            fire_time = self.get_next_fire_time(None, now - window)
            while fire_time is not None and fire_time <= now:
                latest = fire_time
                fire_time = self.get_next_fire_time(
                    fire_time, fire_time + timedelta(seconds=1)
                )
            if latest is not None:
                return latest
        return None


def digest_date(fire_time: datetime, timezone: ZoneInfo) -> date:
    """Return the digest date of a fire time: its date in the schedule's timezone."""
    return fire_time.astimezone(timezone).date()
