"""Times that callers send: timezone-aware, and inside the years a city platform covers (date
arithmetic overflows near year 1 and 9999, and such a time is always a mistake)."""

from datetime import UTC, datetime

from litestar.exceptions import ClientException

EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def check_times(*moments: datetime | None) -> None:
    """400 with the reason unless every given time has a zone and lies in 2000–2100."""
    if any(t is not None and t.tzinfo is None for t in moments):
        raise ClientException(detail="times need a time zone, e.g. 2026-11-01T00:00+08:00")
    if any(t is not None and not EARLIEST <= t <= LATEST for t in moments):
        raise ClientException(detail="times must lie between 2000 and 2100")
