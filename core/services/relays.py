"""Clients' own SMTP relays: which have mail waiting, how to reach them, and
what the last connection said (core/models/relays.py)."""

import logging
import time

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from core.keys import SecretUnavailable
from core.models import SmtpRelay
from core.services.mail.ratelimit import rate_parse
from core.services.mail.smtp import ConnectionFailed, Relay, SmtpTransport

logger = logging.getLogger(__name__)


class RelayUnusable(Exception):
    """A relay that cannot be used as it is saved; the message says why."""


def relay_of(row: SmtpRelay) -> Relay:
    """What the transport needs to reach a client's relay."""
    try:
        password = row.password_get()
    except SecretUnavailable as error:
        raise RelayUnusable(
            _("the relay's password cannot be decrypted: %(error)s") % {"error": error}
        ) from error
    if row.rate_limit:
        try:
            rate_parse(row.rate_limit)
        except ValueError as error:
            raise RelayUnusable(str(error)) from error
    return Relay(
        host=row.host,
        port=row.port,
        security=row.security,
        username=row.username,
        password=password,
        ceiling=row.max_connections,
        rate=row.rate_limit,
    )


def relay_active_of(owner_id: int) -> SmtpRelay | None:
    """The relay the owner's mail goes through now (None: the service's)."""
    return SmtpRelay.objects.filter(owner_id=owner_id, is_active=True).first()


def relays_with_work(queued) -> list[SmtpRelay]:
    """The active relays of clients with attempts in `queued` (a queryset of
    attempts a worker could claim now)."""
    return list(
        SmtpRelay.objects.filter(is_active=True)
        .filter(Exists(queued.filter(owner_id=OuterRef("owner_id"))))
        .order_by("pk")
    )


def relay_problem_record(row: SmtpRelay, problem: str) -> None:
    """What the last connection to the relay said ("" when it worked); written
    only when it changes, not on every delivery."""
    problem = problem[:500]
    if problem != row.problem or row.checked_at is None:
        SmtpRelay.objects.filter(pk=row.pk).update(
            problem=problem, checked_at=timezone.now()
        )
        row.problem = problem
    if problem:
        logger.warning("Relay %s of user %s: %s", row, row.owner_id, problem)


def relay_test(row: SmtpRelay) -> str:
    """Open a session to the relay and log in, as a delivery would; what went
    wrong, or "" if it worked. Recorded on the relay either way."""
    try:
        transport = SmtpTransport(relay_of(row))
        transport.open(deadline=time.monotonic() + settings.EMAIL_TIMEOUT)
        transport.close()
        problem = ""
    except (RelayUnusable, ConnectionFailed) as error:
        problem = str(error)
    relay_problem_record(row, problem)
    return problem
