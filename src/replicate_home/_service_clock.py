"""The service's clock as its answers show it: the HTTP ``Date`` header of a response,
read beside this machine's clock when the request left and when the answer came.

``Date`` (RFC 9110) is the moment the server made the answer, to the whole second. So
the service's clock minus this machine's lies between ``date - answered`` and
``date + 1 s - sent``, widened by a second each way for servers that round or cache
their ``Date``: a bound about three seconds wide plus the round trip, measured from an
answer the client got anyway, without a request of its own. Comparisons use it to place
a lost create's window on the service's clock before any create of theirs shows the
difference more finely (:mod:`replicate_home.comparisons._lost`). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

__all__ = ["DateReading", "parse_http_date"]

#: The resolution of an HTTP date.
_DATE_STEP = timedelta(seconds=1)
#: Allowed each way beyond the resolution: a server may round the second rather than
#: cut it, or reuse one formatted ``Date`` for up to a second (a cached string). Too
#: narrow a bound could leave a lost create outside its window and send it again.
_DATE_SLACK = timedelta(seconds=1)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as an aware UTC datetime, or ``None`` if it is missing or
    not a date (an untrusted header: never an exception)."""
    if not value or len(value) > 64:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class DateReading:
    """One answer's ``Date`` (``date``, the service's clock) between the moments its
    request left (``sent``) and its answer came (``answered``), on this machine's clock."""

    sent: datetime
    answered: datetime
    date: datetime

    def skew_bounds(self) -> tuple[float, float]:
        """Seconds the service's clock is ahead of this machine's, at least and at most."""
        low = (self.date - _DATE_SLACK - self.answered).total_seconds()
        high = (self.date + _DATE_STEP + _DATE_SLACK - self.sent).total_seconds()
        return low, high
