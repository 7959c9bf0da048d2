"""django-q2 entry points: thin shells over the dispatch service."""

from django.conf import settings
from django_q.tasks import async_task

from .services.dispatch import dispatch_deliver, dispatch_tick

SCHEDULE_NAME = "dispatch mailings"


def queue(func: str, *args) -> None:
    """Hand a task to the django-q2 cluster."""
    async_task(func, *args)


def tick():
    """Run by the schedule every DISPATCH_PERIOD_MINUTES."""
    summary = dispatch_tick()
    return _report(summary)


def send_now(mailing_id: int):
    """Queued by the admin's "send now" action."""
    return _report(dispatch_tick(mailing_id=mailing_id))


def deliver():
    """Queued after "retry failed recipients": send what is queued now."""
    return _report(dispatch_deliver())


def _report(summary) -> str:
    return (
        f"runs {summary.runs}, sent {summary.sent}, failed {summary.failed}, "
        f"skipped {summary.skipped}, unknown {summary.unknown}, "
        f"retrying {summary.retried}"
    )


def schedule_ensure(**kwargs) -> None:
    """Create or update the dispatch schedule; run after every migrate."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "core.tasks.tick",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.DISPATCH_PERIOD_MINUTES,
            "repeats": -1,
        },
    )
