"""The one send path (DESIGN.md, Dispatch). Doors import only these names.

The django-q2 schedule (core/tasks.py), `send_scheduled_emails` and the
admin's "send now" and "retry failed recipients" all come here:

1. recovery settles the claims of dead workers (recovery.py);
2. due mailings get their runs, and the runs their attempts (runs.py);
3. workers claim attempts in batches (claims.py), send them over reused
   connections (sending.py) and record the answers in bulk (recording.py);
   several processes deliver at once where the database allows it
   (workers.py).
"""

from django.conf import settings
from django.utils import timezone

from .outcome import Outcome, Summary
from .recovery import attempts_recover
from .runs import (
    NotSendable,
    Plan,
    run_left_out,
    run_open_now,
    run_retry_failed,
    runs_open_due,
)
from .runs import runs_plan as dispatch_plan
from .workers import deliver, deliver_foreground, deliveries_wanted

__all__ = [
    "NotSendable",
    "Outcome",
    "Plan",
    "Summary",
    "dispatch_deliver",
    "dispatch_plan",
    "dispatch_tick",
    "deliveries_wanted",
    "run_left_out",
    "run_open_now",
    "run_retry_failed",
]


def dispatch_tick(
    *,
    now=None,
    mailing_id=None,
    time_budget: float | None = None,
    progress=None,
    deliver_here: bool = True,
) -> Summary:
    """One pass: recover, open due runs (or one run now), and deliver.

    With `deliver_here` off nothing is sent: the caller hands delivery to
    the cluster (`deliveries_wanted` says how many workers it is worth).
    """
    now = now or timezone.now()
    summary = attempts_recover(now=now)
    run_ids = None
    if mailing_id is not None:
        run = run_open_now(mailing_id=mailing_id, now=now)
        summary.runs += 1
        run_ids = [run.pk]
    else:
        summary.add(runs_open_due(now=now))
    if deliver_here:
        summary.add(
            deliver_foreground(
                time_budget=_budget(time_budget), run_ids=run_ids, progress=progress
            )
        )
    return summary


def dispatch_deliver(
    *, time_budget: float | None = None, share: int = 1, recover: bool = True
) -> Summary:
    """One delivery worker: recover (each machine settles its own dead
    workers' claims), then send what is queued."""
    summary = attempts_recover() if recover else Summary()
    return summary.add(deliver(time_budget=_budget(time_budget), share=share))


def _budget(time_budget: float | None) -> float:
    return time_budget if time_budget is not None else settings.DISPATCH_TICK_SECONDS
