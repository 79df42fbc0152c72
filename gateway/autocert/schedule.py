"""When to renew and when to retry. Pure functions of the certificate's dates and a clock."""

from __future__ import annotations

import datetime

SHORT_LIVED = datetime.timedelta(days=10)
FIRST_RETRY = datetime.timedelta(minutes=1)
LONGEST_RETRY = datetime.timedelta(hours=6)


def planned_renewal(not_before: datetime.datetime, not_after: datetime.datetime) -> datetime.datetime:
    """2/3 into the lifetime (90 days → day 60), 1/2 for certificates shorter than 10 days (the
    6-day IP certificates: day 3), leaving room for several retries before expiry."""
    lifetime = not_after - not_before
    share = 1 / 2 if lifetime < SHORT_LIVED else 2 / 3
    return not_before + lifetime * share


def renewal_time(not_before: datetime.datetime, not_after: datetime.datetime,
                 ari_suggestion: datetime.datetime | None) -> datetime.datetime:
    """The planned time, or earlier when the CA's renewal information (ARI) says so (e.g. the
    certificate is about to be revoked). ARI never delays a renewal past the plan."""
    planned = planned_renewal(not_before, not_after)
    if ari_suggestion is not None and ari_suggestion < planned:
        return ari_suggestion
    return planned


def retry_delay(failures: int, not_after: datetime.datetime | None = None,
                now: datetime.datetime | None = None) -> datetime.timedelta:
    """1, 2, 4 … minutes up to 6 hours; never later than a tenth of the time left, so a
    certificate close to expiry is retried often enough to be saved."""
    delay = min(FIRST_RETRY * (2 ** max(0, failures - 1)), LONGEST_RETRY)
    if not_after is not None and now is not None:
        delay = min(delay, max(FIRST_RETRY, (not_after - now) / 10))
    return delay
