"""Facility-local wall-clock times to UTC instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_to_utc(day: date, clock: time, time_zone: str) -> datetime:
    """The UTC instant of a wall-clock time in a zone.

    On a DST fall-back the repeated hour means its first occurrence; in a spring-forward gap
    the time that does not exist moves forward by the gap (02:30 becomes 03:30), which is what
    a planner who wrote "02:30" would find on the wall clock.
    """
    # fold=0 picks the first of a repeated hour and, inside a gap, the offset in force before
    # it, which lands the instant after the gap (PEP 495).
    return datetime.combine(day, clock).replace(tzinfo=ZoneInfo(time_zone), fold=0).astimezone(UTC)


def utc_to_local(instant: datetime, time_zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(time_zone))


def week_monday(day: date) -> date:
    return day - timedelta(days=day.weekday())
