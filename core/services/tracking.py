"""Opens and clicks (DESIGN.md, List health and statistics).

A run freezes what it tracks when it is queued: whether opens and clicks
are tracked, whether per recipient, and the links its message holds. Each
message then carries a signed pixel and signed click links
(core.services.mail.tracking); these endpoints record what they see and
answer at once.

Recording costs one statement on PostgreSQL (the event and the attempt's
first open or click together) and two on SQLite, with no read before it:
the token names the run and the attempt, and what a run tracks is kept in
this process after the first look.

An event is a machine's (`is_machine`), not a person's, when it comes
within TRACKING_MACHINE_SECONDS of delivery, from a known prefetcher or link
scanner by its user agent, by a HEAD request, or through the hidden link no
person clicks (the honeypot), together with everything else that message
did within a minute of it. Only people stamp the attempt's `opened_at` and
`clicked_at`; a click counts as an open as well (images are often off).
"""

import logging
import re
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Min, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.links import link_around_token
from core.models import Attempt, Event, MailingRun
from core.services.mail.tracking import (
    HONEYPOT,
    links_found,
    tracked_parts,
    tracking_token,
    tracking_token_parse,
)

logger = logging.getLogger(__name__)

# Everything a message did this close to a honeypot click was a scanner's.
HONEYPOT_WINDOW = timedelta(seconds=60)

# Why an event is a machine's: the code kept in its `detail`, and its label.
EARLY, USER_AGENT, HEAD, HONEYPOT_HIT, NEAR_HONEYPOT = (
    "machine:early",
    "machine:user-agent",
    "machine:head",
    "machine:honeypot",
    "machine:near-honeypot",
)
MACHINE_REASONS = {
    EARLY: _("by a machine: right after delivery"),
    USER_AGENT: _("by a machine: a known prefetcher or link scanner"),
    HEAD: _("by a machine: a HEAD request"),
    HONEYPOT_HIT: _("by a machine: the hidden link no person clicks"),
    NEAR_HONEYPOT: _("by a machine: with the hidden link"),
}

# User agents of prefetchers, link scanners and programs, not of mail
# readers. Image proxies that fetch when a person opens the message (Gmail's
# GoogleImageProxy, Yahoo's) are people's; Apple Mail's privacy protection
# fetches with an ordinary browser's agent and cannot be told apart here.
MACHINE_AGENTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|preview|scan|python|curl/|wget|"
    r"go-http-client|java/|okhttp|libwww|httpclient|headless|phantomjs|"
    r"facebookexternalhit|barracuda|mimecast|proofpoint|messagelabs|"
    r"symantec|trendmicro|forcepoint|fireeye|sophos|ironport|safelinks|"
    r"microsoft-?defender|virustotal|urldefense|checkpoint|fortinet|zscaler",
    re.IGNORECASE,
)


def machine_reason(*, user_agent: str, method: str) -> str:
    """Why a request is surely a machine's by itself, or ""."""
    if method == "HEAD":
        return HEAD
    if not user_agent.strip() or MACHINE_AGENTS.search(user_agent):
        return USER_AGENT
    return ""


# --- queueing and composing ----------------------------------------------


def run_tracking_freeze(*, run, mailing) -> None:
    """Fix what a run tracks as it is queued: its mailing's choices and the
    links its message holds now."""
    message = mailing.message
    run.track_opens = mailing.track_opens and bool(message.html_body)
    run.track_clicks = mailing.track_clicks
    run.track_recipients = mailing.track_recipients
    run.links = (
        links_found(text=message.body, html_body=message.html_body or "")
        if mailing.track_clicks
        else []
    )
    MailingRun.objects.filter(pk=run.pk).update(
        track_opens=run.track_opens,
        track_clicks=run.track_clicks,
        track_recipients=run.track_recipients,
        links=run.links,
    )


def tracking_urls(token: str) -> dict:
    """A recipient's pixel and the start of their click links."""
    open_head, open_tail = link_around_token("track_open")
    click_head, _ = link_around_token("track_click", index=0)
    return {
        "open_url": f"{open_head}{token}{open_tail}",
        "click_url": f"{click_head}{token}/",
    }


def message_tracked(*, run, attempt_id: int, message):
    """(the parts to render, the tracking variables) for one attempt of a
    run; the message itself and None when the run tracks nothing."""
    if not (run.track_opens or run.track_clicks):
        return message, None
    parts = tracked_parts(
        message.subject,
        message.body,
        message.html_body or "",
        tuple(run.links) if run.track_clicks else (),
        run.track_opens,
    )
    token = tracking_token(
        run_id=run.pk, attempt_id=attempt_id if run.track_recipients else 0
    )
    return parts, tracking_urls(token)


# --- recording -----------------------------------------------------------


class _Runs:
    """What each run tracks, kept in this process after the first look: a
    run's links and choices never change once it is queued."""

    SIZE = 2_000

    def __init__(self):
        self.known = {}
        self.lock = threading.Lock()

    def get(self, run_id: int):
        found = self.known.get(run_id)
        if found is None:
            found = (
                MailingRun.objects.filter(pk=run_id)
                .values(
                    "owner_id",
                    "links",
                    "track_opens",
                    "track_clicks",
                    "track_recipients",
                )
                .first()
            )
            if found is None:
                return None
            found["links"] = tuple(found["links"] or ())
            with self.lock:
                if len(self.known) >= self.SIZE:
                    self.known.clear()
                self.known[run_id] = found
        return found

    def forget(self, run_id: int):
        with self.lock:
            self.known.pop(run_id, None)

    def clear(self):
        with self.lock:
            self.known.clear()


RUNS = _Runs()


def _event_sql(vendor: str) -> str:
    """Insert one open or click of an attempt, judged on the database's row
    (delivered moments ago? near a honeypot click?), and on PostgreSQL stamp
    the attempt's first open and click in the same statement."""
    event, attempt = Event._meta.db_table, Attempt._meta.db_table
    insert = f"""
        INSERT INTO {event} (owner_id, run_id, attempt_id, kind, at, severity,
            status, detail, url, is_machine, source, fingerprint)
        SELECT r.owner_id, r.run_id, r.id, %(kind)s, %(now)s, '', '', r.reason,
            %(url)s, r.reason <> '', %(source)s, ''
        FROM (
            SELECT a.owner_id, a.run_id, a.id, CASE
                WHEN %(reason)s <> '' THEN %(reason)s
                WHEN a.status = 'sending' OR a.attempted_at IS NULL
                    OR a.attempted_at > %(early)s THEN '{EARLY}'
                WHEN EXISTS (
                    SELECT 1 FROM {event} h WHERE h.attempt_id = a.id
                    AND h.detail = '{HONEYPOT_HIT}' AND h.at >= %(window)s
                ) THEN '{NEAR_HONEYPOT}'
                ELSE ''
            END AS reason
            FROM {attempt} a WHERE a.id = %(attempt)s AND a.run_id = %(run)s
        ) r
        RETURNING attempt_id, detail
    """
    stamp = f"""
        UPDATE {attempt} SET opened_at = COALESCE(opened_at, %(now)s),
            clicked_at = CASE WHEN %(kind)s = 'click'
                THEN COALESCE(clicked_at, %(now)s) ELSE clicked_at END
    """
    if vendor == "postgresql":
        return f"""
            WITH e AS ({insert})
            {stamp} FROM e WHERE {attempt}.id = e.attempt_id AND e.detail = ''
            RETURNING {attempt}.id
        """
    return insert, stamp + " WHERE id = %(attempt)s"


def event_record(
    *, token: str, kind: str, index: int | None = None, user_agent="", method="GET"
) -> tuple[bool, str]:
    """Record an open (the pixel) or a click (link `index`); return (whether
    the token and link were good, the address a click leads to)."""
    named = tracking_token_parse(token)
    if named is None:
        logger.info("Tracking: a token that does not verify: %.40s", token)
        return False, ""
    run_id, attempt_id = named
    run = RUNS.get(run_id)
    if run is None:
        logger.info("Tracking: run %s no longer exists", run_id)
        return False, ""
    # Only what the run tracks: a click's token turned into a pixel's, on a
    # run that tracks no opens, records nothing.
    if kind == Event.Kind.OPEN and not run["track_opens"]:
        return True, ""
    if kind == Event.Kind.CLICK and not run["track_clicks"]:
        logger.info("Tracking: run %s tracks no clicks", run_id)
        return False, ""
    url = ""
    if kind == Event.Kind.CLICK:
        if index != HONEYPOT:
            if not (index and 0 < index <= len(run["links"])):
                logger.info("Tracking: run %s has no link %s", run_id, index)
                return False, ""
            url = run["links"][index - 1]
    reason = machine_reason(user_agent=user_agent, method=method)
    if kind == Event.Kind.CLICK and index == HONEYPOT:
        reason = HONEYPOT_HIT
    try:
        _record(run, run_id, attempt_id, kind, url, reason)
    except DatabaseError:
        # The reader still gets the image or their link; the event is lost
        # with the database, and said so. (A run deleted since is looked up
        # again next time.)
        logger.exception("Tracking: a %s of run %s not recorded", kind, run_id)
        RUNS.forget(run_id)
    return True, url


def _record(run, run_id, attempt_id, kind, url, reason) -> None:
    now = timezone.now()
    if not attempt_id or not run["track_recipients"]:
        # Counted without tying it to a recipient.
        Event.objects.create(
            owner_id=run["owner_id"],
            run_id=run_id,
            kind=kind,
            at=now,
            url=url,
            detail=reason,
            is_machine=bool(reason),
            source="pixel" if kind == Event.Kind.OPEN else "link",
        )
        return
    params = {
        "kind": kind,
        "now": now,
        "reason": reason,
        "early": now - timedelta(seconds=settings.TRACKING_MACHINE_SECONDS),
        "window": now - HONEYPOT_WINDOW,
        "url": url,
        "source": "pixel" if kind == Event.Kind.OPEN else "link",
        "attempt": attempt_id,
        "run": run_id,
    }
    _insert(params)
    if reason == HONEYPOT_HIT:
        _honeypot_spread(attempt_id=attempt_id, now=now)


def _insert(params: dict) -> None:
    sql = _event_sql(connection.vendor)
    with connection.cursor() as cursor:
        if isinstance(sql, str):
            cursor.execute(sql, params)
            return
        insert, stamp = sql
        with transaction.atomic():
            cursor.execute(insert, params)
            row = cursor.fetchone()
            if row is not None and not row[1]:
                cursor.execute(stamp, params)


def _honeypot_spread(*, attempt_id: int, now) -> None:
    """Everything the message did within a minute before its honeypot click
    was the scanner's: flag it, and stamp the attempt from people alone."""
    with transaction.atomic():
        flagged = Event.objects.filter(
            attempt_id=attempt_id,
            kind__in=(Event.Kind.OPEN, Event.Kind.CLICK),
            at__gte=now - HONEYPOT_WINDOW,
            is_machine=False,
        ).update(is_machine=True, detail=NEAR_HONEYPOT)
        if flagged:
            people = Event.objects.filter(attempt_id=attempt_id, is_machine=False)
            firsts = people.aggregate(
                opened=Min(
                    "at", filter=Q(kind__in=(Event.Kind.OPEN, Event.Kind.CLICK))
                ),
                clicked=Min("at", filter=Q(kind=Event.Kind.CLICK)),
            )
            Attempt.objects.filter(pk=attempt_id).update(
                opened_at=firsts["opened"], clicked_at=firsts["clicked"]
            )
