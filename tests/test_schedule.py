"""Unit tests of digest.schedule: crontab(5) meanings, daylight saving time,
previous fire times, digest dates, and the schedule and timezone keys of the
subscribers file."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.schedule import CrontabTrigger, digest_date, expand_weekdays

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
UTC_ZONE = ZoneInfo("UTC")

ALL_DAYS = {0, 1, 2, 3, 4, 5, 6}

VALID_HEADER = """\
keywords:
  - Video Anomaly Detection
sender: "Daily Papers <papers@example.org>"
"""


def fire_times(trigger: CrontabTrigger, start: datetime, count: int) -> list[datetime]:
    """Return the first count fire times at or after start.

    Each fire time after the first is computed from the previous one, with now
    one second after it, as a scheduler advances a job.
    """
    found: list[datetime] = []
    previous = None
    now = start
    for _ in range(count):
        fire_time = trigger.get_next_fire_time(previous, now)
        if fire_time is None:
            break
        found.append(fire_time)
        previous = fire_time
        now = fire_time + timedelta(seconds=1)
    return found


def local_time(fire_time: datetime, zone: ZoneInfo) -> datetime:
    """Return the wall time of a fire time in zone.

    The conversion goes through UTC because astimezone returns a datetime
    unchanged when its tzinfo is already zone, even if its wall time does not exist.
    """
    return fire_time.astimezone(UTC).astimezone(zone)


def in_utc(moment: datetime | None) -> datetime | None:
    """Return the moment in UTC.

    An == between datetimes of different zones is always False when one of them
    is a wall time that daylight saving repeats or skips (PEP 495), so fire times
    are compared in UTC.
    """
    return None if moment is None else moment.astimezone(UTC)


def write_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "subscribers.yaml"
    path.write_text(VALID_HEADER + extra, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("expression", "zone", "start", "expected"),
    [
        pytest.param(
            "0 6 * * *",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-01T06:00:00+01:00",
                "2026-01-02T06:00:00+01:00",
                "2026-01-03T06:00:00+01:00",
            ],
            id="daily",
        ),
        pytest.param(
            "0 6 * * *",
            BERLIN,
            datetime(2026, 7, 1, 6, 0, 1, tzinfo=BERLIN),
            [
                "2026-07-02T06:00:00+02:00",
                "2026-07-03T06:00:00+02:00",
            ],
            id="daily-summer-time",
        ),
        pytest.param(
            "0 6 * * 0",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-04T06:00:00+01:00",
                "2026-01-11T06:00:00+01:00",
                "2026-01-18T06:00:00+01:00",
            ],
            id="sunday-as-0",
        ),
        pytest.param(
            "0 6 * * 7",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-04T06:00:00+01:00",
                "2026-01-11T06:00:00+01:00",
                "2026-01-18T06:00:00+01:00",
            ],
            id="sunday-as-7",
        ),
        pytest.param(
            "0 6 * * 1-5",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-01T06:00:00+01:00",
                "2026-01-02T06:00:00+01:00",
                "2026-01-05T06:00:00+01:00",
                "2026-01-06T06:00:00+01:00",
                "2026-01-07T06:00:00+01:00",
                "2026-01-08T06:00:00+01:00",
                "2026-01-09T06:00:00+01:00",
                "2026-01-12T06:00:00+01:00",
            ],
            id="monday-to-friday",
        ),
        pytest.param(
            "0 6 * * sat-sun",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-03T06:00:00+01:00",
                "2026-01-04T06:00:00+01:00",
                "2026-01-10T06:00:00+01:00",
                "2026-01-11T06:00:00+01:00",
            ],
            id="weekend-by-name",
        ),
        pytest.param(
            "0 6 13 * 5",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-02T06:00:00+01:00",
                "2026-01-09T06:00:00+01:00",
                "2026-01-13T06:00:00+01:00",
                "2026-01-16T06:00:00+01:00",
                "2026-01-23T06:00:00+01:00",
                "2026-01-30T06:00:00+01:00",
                "2026-02-06T06:00:00+01:00",
                # Friday the 13th matches both fields and fires once.
                "2026-02-13T06:00:00+01:00",
                "2026-02-20T06:00:00+01:00",
            ],
            id="thirteenth-or-friday",
        ),
        pytest.param(
            "*/15 9-10 * * *",
            BERLIN,
            datetime(2026, 1, 1, tzinfo=BERLIN),
            [
                "2026-01-01T09:00:00+01:00",
                "2026-01-01T09:15:00+01:00",
                "2026-01-01T09:30:00+01:00",
                "2026-01-01T09:45:00+01:00",
                "2026-01-01T10:00:00+01:00",
                "2026-01-01T10:15:00+01:00",
                "2026-01-01T10:30:00+01:00",
                "2026-01-01T10:45:00+01:00",
                "2026-01-02T09:00:00+01:00",
            ],
            id="every-quarter-hour",
        ),
    ],
)
def test_trigger_fires_as_crontab_does(
    expression: str, zone: ZoneInfo, start: datetime, expected: list[str]
) -> None:
    trigger = CrontabTrigger(expression, zone)

    found = fire_times(trigger, start, len(expected))

    assert [local_time(f, zone).isoformat() for f in found] == expected


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (
            datetime(2026, 1, 9, 6, 0, tzinfo=UTC),
            datetime(2026, 1, 9, 6, 0, tzinfo=UTC),
        ),
        (
            datetime(2026, 1, 9, 6, 0, 1, tzinfo=UTC),
            datetime(2026, 1, 10, 6, 0, tzinfo=UTC),
        ),
    ],
)
def test_next_fire_time_includes_now(start: datetime, expected: datetime) -> None:
    trigger = CrontabTrigger("0 6 * * *", UTC_ZONE)

    assert in_utc(trigger.get_next_fire_time(None, start)) == expected


@pytest.mark.parametrize("expression", ["30 2 * * *", "30 1 * * *"])
@pytest.mark.parametrize(
    ("zone", "change"),
    [
        pytest.param(BERLIN, date(2026, 3, 29), id="berlin-spring-forward"),
        pytest.param(BERLIN, date(2026, 10, 25), id="berlin-fall-back"),
        pytest.param(NEW_YORK, date(2026, 3, 8), id="new-york-spring-forward"),
        pytest.param(NEW_YORK, date(2026, 11, 1), id="new-york-fall-back"),
    ],
)
def test_daylight_saving_fires_once_per_date(
    expression: str, zone: ZoneInfo, change: date
) -> None:
    trigger = CrontabTrigger(expression, zone)
    first = change - timedelta(days=3)
    expected_dates = [first + timedelta(days=n) for n in range(7)]
    start = datetime(first.year, first.month, first.day, tzinfo=zone)

    found = fire_times(trigger, start, len(expected_dates))

    local_times = [local_time(f, zone) for f in found]
    dates = [moment.date() for moment in local_times]
    doubled = sorted({day for day in dates if dates.count(day) > 1})
    skipped = [day for day in expected_dates if day not in dates]
    assert doubled == []
    assert skipped == []
    assert dates == expected_dates
    assert found == sorted(found)
    minute, hour = (int(field) for field in expression.split()[:2])
    other_days = [m for m in local_times if m.date() != change]
    assert [(m.hour, m.minute) for m in other_days] == [(hour, minute)] * 6


def test_fall_back_keeps_first_repeated_time() -> None:
    trigger = CrontabTrigger("30 2 * * *", BERLIN)
    start = datetime(2026, 10, 25, tzinfo=BERLIN)

    [first, second] = fire_times(trigger, start, 2)

    # 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
    assert in_utc(first) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert in_utc(second) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_spring_forward_fires_after_gap() -> None:
    trigger = CrontabTrigger("30 2 * * *", BERLIN)
    start = datetime(2026, 3, 29, tzinfo=BERLIN)

    [fire_time] = fire_times(trigger, start, 1)

    # 02:30 does not exist that night, so the run comes an hour later by the clock.
    assert in_utc(fire_time) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert local_time(fire_time, BERLIN).isoformat() == "2026-03-29T03:30:00+02:00"
    assert digest_date(fire_time, BERLIN) == date(2026, 3, 29)


@pytest.mark.parametrize(
    ("expression", "zone", "now", "expected"),
    [
        pytest.param(
            "0 6 * * *",
            UTC_ZONE,
            datetime(2026, 1, 9, 6, 0, tzinfo=UTC),
            datetime(2026, 1, 9, 6, 0, tzinfo=UTC),
            id="fire-time-equal-to-now",
        ),
        pytest.param(
            "0 6 * * *",
            UTC_ZONE,
            datetime(2026, 1, 9, 5, 59, 59, tzinfo=UTC),
            datetime(2026, 1, 8, 6, 0, tzinfo=UTC),
            id="second-before-fire-time",
        ),
        pytest.param(
            "0 6 * * 1-5",
            UTC_ZONE,
            datetime(2026, 1, 11, 12, 0, tzinfo=UTC),
            datetime(2026, 1, 9, 6, 0, tzinfo=UTC),
            id="sunday-returns-friday",
        ),
        pytest.param(
            "0 6 13 * 5",
            UTC_ZONE,
            datetime(2026, 1, 14, tzinfo=UTC),
            datetime(2026, 1, 13, 6, 0, tzinfo=UTC),
            id="thirteenth-not-friday",
        ),
        pytest.param(
            "0 6 1 1 *",
            UTC_ZONE,
            datetime(2026, 12, 31, tzinfo=UTC),
            datetime(2026, 1, 1, 6, 0, tzinfo=UTC),
            id="yearly",
        ),
        pytest.param(
            "30 2 * * *",
            BERLIN,
            datetime(2026, 10, 25, 3, 0, tzinfo=BERLIN),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            id="berlin-fall-back",
        ),
        pytest.param(
            "0 6 * * *",
            TOKYO,
            datetime(2026, 1, 8, 22, 0, tzinfo=UTC),
            datetime(2026, 1, 8, 21, 0, tzinfo=UTC),
            id="tokyo-ahead-of-utc",
        ),
    ],
)
def test_previous_fire_time_at_or_before_now(
    expression: str, zone: ZoneInfo, now: datetime, expected: datetime
) -> None:
    trigger = CrontabTrigger(expression, zone)

    assert in_utc(trigger.previous_fire_time(now)) == expected


@pytest.mark.parametrize(
    ("expression", "now"),
    [
        pytest.param("0 6 30 2 *", datetime(2026, 6, 1, tzinfo=UTC), id="february-30"),
        pytest.param("0 6 31 4 *", datetime(2026, 6, 1, tzinfo=UTC), id="april-31"),
        # February 29th last came in 2024, more than a year before now.
        pytest.param("0 6 29 2 *", datetime(2027, 3, 1, tzinfo=UTC), id="february-29"),
    ],
)
def test_previous_fire_time_none_within_year(expression: str, now: datetime) -> None:
    trigger = CrontabTrigger(expression, UTC_ZONE)

    assert trigger.previous_fire_time(now) is None


@pytest.mark.parametrize("expression", ["0 6 30 2 *", "0 6 31 4 *"])
def test_impossible_date_never_fires(expression: str) -> None:
    trigger = CrontabTrigger(expression, UTC_ZONE)

    assert trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_previous_fire_time_of_minutely_schedule() -> None:
    # A subprocess can be stopped at the timeout, unlike a thread.
    code = (
        "from datetime import UTC, datetime\n"
        "from zoneinfo import ZoneInfo\n"
        "from digest.schedule import CrontabTrigger\n"
        "trigger = CrontabTrigger('* * * * *', ZoneInfo('UTC'))\n"
        "now = datetime(2026, 1, 9, 6, 0, 30, tzinfo=UTC)\n"
        "print(trigger.previous_fire_time(now))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=3
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "2026-01-09 06:00:00+00:00\n"


@pytest.mark.parametrize(
    ("fire_time", "zone", "expected"),
    [
        (datetime(2026, 1, 8, 23, 30, tzinfo=UTC), TOKYO, date(2026, 1, 9)),
        (datetime(2026, 1, 8, 23, 30, tzinfo=UTC), UTC_ZONE, date(2026, 1, 8)),
        (datetime(2026, 1, 9, 3, 0, tzinfo=UTC), NEW_YORK, date(2026, 1, 8)),
        (datetime(2026, 1, 9, 8, 30, tzinfo=TOKYO), UTC_ZONE, date(2026, 1, 8)),
    ],
)
def test_digest_date_uses_schedule_timezone(
    fire_time: datetime, zone: ZoneInfo, expected: date
) -> None:
    assert digest_date(fire_time, zone) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", ALL_DAYS),
        ("0", {0}),
        ("7", {0}),
        ("0,7", {0}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("5-7", {5, 6, 0}),
        ("*/2", {0, 2, 4, 6}),
        ("1-7/2", {1, 3, 5, 0}),
        ("sat-sun", {6, 0}),
        ("fri-sun", {5, 6, 0}),
        ("sun-sat", ALL_DAYS),
        ("mon-fri,sun", {0, 1, 2, 3, 4, 5}),
        ("MON,Wed", {1, 3}),
        ("sun-sun", {0}),
    ],
)
def test_expand_weekdays_follows_crontab(field: str, expected: set[int]) -> None:
    assert expand_weekdays(field) == expected


@pytest.mark.parametrize(
    ("field", "fragment"),
    [
        ("8", "'8'"),
        ("5-1", "'5-1'"),
        ("*/0", "'*/0'"),
        ("mon-", "'mon-'"),
        ("1,", "'1,'"),
        ("funday", "'funday'"),
        ("foo", "'foo'"),
    ],
)
def test_expand_weekdays_rejects_invalid_field(field: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        expand_weekdays(field)

    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "expression",
    [
        "0 6 * *",
        "0 6 * * * *",
        "",
        "61 * * * *",
        "0 24 * * *",
        "0 6 0 * *",
        "0 6 * 13 *",
        "0 6 * * 8",
        "0 6 * * 5-1",
        "0 6 * * */0",
        "garbage",
        "every day at six",
    ],
)
def test_invalid_expression_raises_value_error(expression: str) -> None:
    with pytest.raises(ValueError) as caught:
        CrontabTrigger(expression, UTC_ZONE)

    message = str(caught.value)
    assert f"{expression!r}" in message
    assert "\n" not in message


def test_config_schedule_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ""))

    assert config.schedule == "0 6 * * *"
    assert config.timezone == "UTC"
    assert config.zone == UTC_ZONE


def test_config_builds_trigger_in_timezone(tmp_path: Path) -> None:
    extra = 'schedule: "30 7 * * 1-5"\ntimezone: Asia/Tokyo\n'
    config = load_config(write_config(tmp_path, extra))

    trigger = config.trigger()

    assert config.zone == TOKYO
    assert trigger.expression == "30 7 * * 1-5"
    assert trigger.timezone == TOKYO
    # Friday 2026-01-09 22:00 UTC is Saturday in Tokyo, so Monday comes next.
    next_fire_time = trigger.get_next_fire_time(
        None, datetime(2026, 1, 9, 22, 0, tzinfo=UTC)
    )
    assert in_utc(next_fire_time) == datetime(2026, 1, 11, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('schedule: "61 * * * *"\n', "schedule", "'61 * * * *'"),
        ('schedule: "0 6 * *"\n', "schedule", "expected 5 fields"),
        ('schedule: "0 6 * * 8"\n', "schedule", "'0 6 * * 8'"),
        ("schedule: garbage\n", "schedule", "'garbage'"),
        ("schedule: 6\n", "schedule", "valid string"),
        ('schedule: "0 6 * * *\\n0 7 * * *"\n', "schedule", "line breaks"),
        ("timezone: Mars/Olympus_Mons\n", "timezone", "'Mars/Olympus_Mons'"),
        ("timezone: CEST\n", "timezone", "'CEST'"),
        ('timezone: ""\n', "timezone", "IANA name"),
        ("timezone: ../../etc/passwd\n", "timezone", "'../../etc/passwd'"),
    ],
)
def test_config_rejects_invalid_schedule_key(
    tmp_path: Path, extra: str, key: str, fragment: str
) -> None:
    path = write_config(tmp_path, extra)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: ")
    assert fragment in message
    assert "\n" not in message
