"""Reading the "not before" times technicians type (ISO 8601, local time unless a zone is given)."""

from __future__ import annotations

from datetime import date, datetime

from labctl.queue.errors import InvalidJobSpec

ALLOWED = "an ISO 8601 date-time such as 2026-12-05T02:00 (local time) or 2026-12-05T02:00+01:00"


def parse_time(value: object, field_name: str) -> float:
    """Epoch seconds of ``value`` (text or a TOML date-time); InvalidJobSpec naming the field."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidJobSpec(f"{field_name}: cannot read {value!r} (allowed: {ALLOWED})") from None
    else:
        raise InvalidJobSpec(f"{field_name}: expected a date-time, got {type(value).__name__} (allowed: {ALLOWED})")
    return moment.timestamp()  # naive: local time, as the technician at the bench means it
