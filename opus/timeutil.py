"""UTC instants: parsing what clients send and printing what UWS requires.

UWS 1.1 wants ISO 8601 with a 'T' and a 'Z' (UWS-74); clients send with or without 'Z' and with
0 to 6 fractional digits (CLI-07, UWS-75).  A missing zone means UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from opus.errors import BadRequest

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$",
    re.ASCII,
)
#: The largest zone offset, as XML Schema's dateTime allows (-14:00 to +14:00).
MAX_OFFSET = timedelta(hours=14)
RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def parse_instant(text: str, what: str = "date") -> datetime:
    """Parse an ISO 8601 instant into an aware UTC datetime, or raise BadRequest naming ``what``:
    for a malformed text, an impossible date, a zone offset beyond +-14:00 (or with minutes over 59)
    and an instant that falls outside years 1 to 9999 once moved to UTC."""
    value = (text or "").strip()
    m = _ISO.match(value)
    if not m:
        raise BadRequest(f"{what}: {text!r} is not an ISO 8601 instant (e.g. 2030-01-01T00:00:00Z)")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        dt = datetime(int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micro)
    except ValueError as exc:
        raise BadRequest(f"{what}: {text!r} is not a valid date ({exc})") from None
    if zone in (None, "Z"):
        return dt.replace(tzinfo=timezone.utc)
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    offset = timedelta(hours=hours, minutes=minutes)
    if minutes > 59 or offset > MAX_OFFSET:
        raise BadRequest(f"{what}: {text!r} has the zone offset {zone}: offsets run from -14:00 to +14:00, "
                         "minutes from 00 to 59")
    try:
        return (dt - offset if zone[0] == "+" else dt + offset).replace(tzinfo=timezone.utc)
    except OverflowError:
        raise BadRequest(f"{what}: {text!r} is outside the instants this server handles ({RANGE})") from None


def format_instant(dt: datetime | None) -> str:
    """Print an instant as UWS wants it: ``2024-05-01T12:00:00.000Z`` (empty string for None)."""
    if dt is None:
        return ""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
            f"{dt.microsecond // 1000:03d}Z")


INT32_MAX = 2 ** 31 - 1


def parse_int(text: str, what: str, minimum: int | None = None, maximum: int = INT32_MAX) -> int:
    """Parse a decimal integer (ASCII digits) or raise BadRequest naming ``what``."""
    value_text = str(text).strip()
    if not re.fullmatch(r"[+-]?[0-9]+", value_text):
        raise BadRequest(f"{what}: {text!r} is not an integer")
    digits = value_text.lstrip("+-").lstrip("0")
    if len(digits) > 19:  # an integer all the same, beyond any bound: say which (and convert nothing)
        shown = value_text if len(value_text) <= 40 else f"{value_text[:20]}... ({len(digits)} digits)"
        if value_text.startswith("-"):
            bound = f"at least {minimum}" if minimum is not None else "of at most 19 digits"
        else:
            bound = f"at most {maximum}"
        raise BadRequest(f"{what}: {shown} is out of range: it must be {bound}")
    value = int(value_text)
    if minimum is not None and value < minimum:
        raise BadRequest(f"{what}: must be an integer >= {minimum}, got {value}")
    if value > maximum:
        raise BadRequest(f"{what}: must be at most {maximum}, got {value}")
    return value
