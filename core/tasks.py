"""django-q2 entry points: thin shells over the dispatch service.

Fan-out happens here: a tick opens the due runs and hands delivery to as
many cluster workers as the queue is worth, on this machine or any other
that shares the broker.
"""

from django.conf import settings
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.tasks import async_task

from .services import (
    accounts,
    bounces,
    dispatch,
    events,
    senders,
    site,
    subscriptions,
)

SCHEDULE_NAME = "dispatch mailings"
PURGE_SCHEDULE_NAME = "purge unconfirmed accounts"
PENDING_SCHEDULE_NAME = "purge unconfirmed subscribers"
FIGURES_SCHEDULE_NAME = "public figures"
BOUNCES_SCHEDULE_NAME = "process bounces"
COUNTS_SCHEDULE_NAME = "count opens and clicks"
SENDERS_SCHEDULE_NAME = "check sender domains"


def queue(func: str, *args) -> None:
    """Hand a task to the django-q2 cluster."""
    async_task(func, *args)


def tick():
    """Run by the schedule every DISPATCH_PERIOD_MINUTES."""
    return _open_and_deliver(dispatch.dispatch_tick(deliver_here=False))


def process_bounces():
    """Run every BOUNCE_PERIOD_MINUTES: the bounce mailbox, read and acted on.

    A mailbox that cannot be read (down, login refused) is logged and
    reported as the task's result; nothing is lost, the next pass tries
    again."""
    try:
        return bounces.bounces_process().line()
    except bounces.MailboxError as error:
        return f"bounce mailbox not read: {error}"


def count_events():
    """Run every few minutes: the hours of opens and clicks that are over,
    counted for the reports."""
    return f"{events.events_count_hours()} hourly counts written"


def purge_unverified():
    """Run daily: accounts nobody confirmed lapse."""
    return f"unconfirmed accounts deleted: {accounts.users_purge_unverified()}"


def check_sender_domains():
    """Run daily: each sender domain's DNS looked at again; a domain whose
    DKIM record is gone stops being verified."""
    checked, verified = senders.sender_domains_check()
    return f"sender domains checked: {checked}, verified: {verified}"


def purge_pending_subscribers():
    """Run daily: subscribers who never confirmed lapse."""
    deleted = subscriptions.subscriptions_purge_pending()
    return f"unconfirmed subscribers deleted: {deleted}"


def subscription_confirmation(form_id: int, email: str, link: str, language: str):
    """Queued by a subscription form: the e-mail with the confirmation link."""
    subscriptions.subscription_mail_confirmation(
        form_id=form_id, email=email, link=link, language=language
    )
    return f"confirmation sent to form {form_id}'s subscriber"


def subscription_welcome(form_id: int, client_id: int):
    """Queued when a subscriber confirms: the form's welcome message."""
    return subscriptions.subscription_welcome(form_id=form_id, client_id=client_id)


def site_figures_refresh():
    """Run every SITE_FIGURES_SECONDS: the home page's figures."""
    return str(site.site_figures_refresh())


def send_now(mailing_id: int):
    """Queued by the admin's "send now" action."""
    try:
        summary = dispatch.dispatch_tick(mailing_id=mailing_id, deliver_here=False)
    except dispatch.NotSendable as refusal:
        return f"not sent: {refusal}"
    return _open_and_deliver(summary)


def _open_and_deliver(summary) -> str:
    """Hand the queue to the cluster, this worker included: it delivers
    beside the others rather than wait for the broker to hand it on."""
    wanted = dispatch.deliveries_wanted()
    started = fan_out(wanted - 1, share=wanted) if wanted else 0
    if wanted:
        # The tick recovered already.
        summary.add(dispatch.dispatch_deliver(share=wanted, recover=False))
    return f"{summary.line()}; deliveries started {started}"


def deliver(share: int = 1):
    """One cluster worker's delivery; `share` workers deliver side by side."""
    return dispatch.dispatch_deliver(share=share).line()


def fan_out(count: int | None = None, *, share: int | None = None) -> int:
    """Queue `count` deliveries (by default as many as the work is worth),
    less those still waiting for a worker; each gets its `share` of the
    connections."""
    if count is None or share is None:
        wanted = dispatch.deliveries_wanted()
        count = wanted if count is None else count
        share = share or wanted
    started = max(0, count - get_broker().queue_size())
    for _ in range(started):
        queue("core.tasks.deliver", share)
    return started


def schedule_ensure(**kwargs) -> None:
    """Create or update the schedules; run after every migrate."""
    schedules = {
        SCHEDULE_NAME: {
            "func": "core.tasks.tick",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.DISPATCH_PERIOD_MINUTES,
        },
        FIGURES_SCHEDULE_NAME: {
            "func": "core.tasks.site_figures_refresh",
            "schedule_type": Schedule.MINUTES,
            "minutes": max(1, site.SITE_FIGURES_SECONDS // 60),
        },
        BOUNCES_SCHEDULE_NAME: {
            "func": "core.tasks.process_bounces",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.BOUNCE_PERIOD_MINUTES,
        },
        COUNTS_SCHEDULE_NAME: {
            "func": "core.tasks.count_events",
            "schedule_type": Schedule.MINUTES,
            "minutes": 5,
        },
        PURGE_SCHEDULE_NAME: {
            "func": "core.tasks.purge_unverified",
            "schedule_type": Schedule.DAILY,
        },
        PENDING_SCHEDULE_NAME: {
            "func": "core.tasks.purge_pending_subscribers",
            "schedule_type": Schedule.DAILY,
        },
        SENDERS_SCHEDULE_NAME: {
            "func": "core.tasks.check_sender_domains",
            "schedule_type": Schedule.DAILY,
        },
    }
    for name, defaults in schedules.items():
        Schedule.objects.update_or_create(
            name=name, defaults={**defaults, "repeats": -1}
        )
