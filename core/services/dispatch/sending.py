"""Sending: one process's connections to the relay, fed from its claims.

The shape of listmonk's manager, in one process: the main thread claims
batches ahead of need, feeds their attempts to a queue, records each batch
once all its answers are in, renews the claims' heartbeat and decides how
many connections to keep. Each connection is a thread with its own SMTP
session, kept across batches; it builds a recipient's message, takes a
token from the shared rate limit, journals it as in flight, sends it and
journals the answer. Only the main thread touches the database.

How many connections (DESIGN.md, Dispatch 3): SMTP_CONCURRENCY pins the
number. Otherwise it starts small and doubles while each step brings more
throughput, settles on the best it saw, and gives back connections the
server refuses (a refused connect, or 421 "too busy"); never more than this
process's share of SMTP_MAX_CONCURRENCY. What it settles on is remembered
per relay, so the next delivery starts there.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core.links import site_host
from core.services.mail.dkim import dkim_sign
from core.services.mail.message import (
    email_prepare,
    envelope_recipient,
    message_sender,
)
from core.services.mail.ratelimit import RateLimiter
from core.services.mail.smtp import (
    ConnectionFailed,
    Relay,
    envelope_check,
    relay_name,
    transport_open,
)
from core.services.mail.templates import message_mentions
from core.services.mail.verp import verp_address, verp_message_id, verp_token
from core.services.privacy import preferences_url
from core.services.tracking import message_tracked
from core.services.unsubscribe import unsubscribe_url
from core.services.webhooks import metadata_headers

from .claims import attempts_claim, claims_renew, token_new
from .journal import Journal
from .outcome import (
    DELETED,
    FAILURES,
    UNSUBSCRIBED,
    Outcome,
    Result,
    Summary,
    outcome_of,
)
from .recording import results_record

logger = logging.getLogger(__name__)

# Batches claimed ahead of the one being sent, so connections never wait
# for a claim or a recording.
AHEAD = 2
START_CONNECTIONS = 2
# A step up must bring this much more throughput to be kept; a doubling
# that nearly doubled it is followed by a quadrupling.
GROWTH = 1.15
LINEAR = 1.8
# A measurement covers at least this long and this many answers per
# connection, so a slow server's few answers still say something.
MEASURE_SECONDS = 0.2
MEASURE_ANSWERS_PER_CONNECTION = 4
# How long a settled count is kept before trying a little more.
PROBE_SECONDS = 15
# How long the count a server accepted stays its ceiling after it refused one more.
REFUSED_SECONDS = 300
LEARNED_SECONDS = 3600
UNREACHABLE = "no SMTP session (server down or login refused): {}"
# Opens refused in a row, with no session open, that mean the server is down.
CONNECT_TRIES = 3


# What `Sender.streaks_seen` holds for a run once this sender recorded its pause.
PAUSE_RECORDED = object()


class Concurrency:
    """How many connections this process keeps to its relay.

    Pinned (SMTP_CONCURRENCY), the count stays put unless the server refuses
    connections. Otherwise it starts at what this relay took last time (or
    two), doubles while each step brings more throughput, settles on the
    best count it saw, and now and then tries a quarter more.
    """

    def __init__(self, *, relay: str, ceiling: int, pinned: int | None):
        self.relay = relay
        self.key = f"dispatch:relay:{relay}:connections"
        self.adapts = not pinned
        self.ceiling = max(1, pinned or ceiling)
        learned = cache.get(self.key) if self.adapts else None
        self.target = min(self.ceiling, pinned or learned or START_CONNECTIONS)
        self.best_rate, self.best_level = 0.0, self.target
        self.settled = not self.adapts
        now = time.monotonic()
        self.probe_at = now + PROBE_SECONDS
        self.refused_ceiling, self.refused_until = self.ceiling, 0.0
        # Connections report refusals while the main thread measures.
        self.lock = threading.RLock()

    def wanted(self) -> int:
        """The count to keep now."""
        with self.lock:
            if not self.adapts and time.monotonic() >= self.refused_until:
                self.target = self.ceiling  # the refusals are long past
            return self.target

    def observe(self, *, rate: float) -> None:
        """The throughput of the last measurement, taken at `target` connections."""
        if not self.adapts:
            return
        with self.lock:
            self._observe(rate)

    def _observe(self, rate: float) -> None:
        now = time.monotonic()
        limit = self._limit(now)
        if self.settled:
            if now < self.probe_at or self.target >= limit:
                return
            # Conditions change (other senders, the server's load): try more.
            self.best_rate, self.best_level = rate, self.target
            self.settled = False
            self.target = min(limit, self.target + max(1, self.target // 4))
            return
        if rate >= self.best_rate * GROWTH:
            # Throughput that grew with the connections (a slow server, not
            # a busy processor) earns a bigger step.
            step = 4 if rate >= self.best_rate * LINEAR else 2
            self.best_rate, self.best_level = rate, self.target
            if self.target < limit:
                self.target = min(limit, self.target * step)
                return
        self._settle(self.best_level, now)

    def finish(self) -> None:
        """The delivery ends: keep what it measured, settled or not.

        A mailing shorter than the search still tells the next one where
        to start: the best count it measured (never one it did not).
        """
        with self.lock:
            if self.adapts and not self.settled and self.best_rate:
                cache.set(self.key, self.best_level, LEARNED_SECONDS)

    def refused(self, *, working: int) -> None:
        """The server refused one more connection while `working` were open."""
        with self.lock:
            now = time.monotonic()
            self.refused_ceiling = max(1, min(working, self._limit(now)))
            self.refused_until = now + REFUSED_SECONDS
            self.best_level = min(self.best_level, self.refused_ceiling)
            self._settle(min(self.target, self.refused_ceiling), now)

    def busy(self) -> None:
        """The server closed a session with 421: one connection fewer."""
        self.refused(working=self.target - 1)

    def _limit(self, now) -> int:
        return self.refused_ceiling if now < self.refused_until else self.ceiling

    def _settle(self, level: int, now) -> None:
        logger.info(
            "Relay %s: %d connections (%.0f msg/s at best, with %d)",
            self.relay,
            max(1, level),
            self.best_rate,
            self.best_level,
        )
        self.target, self.settled = max(1, level), True
        self.probe_at = now + PROBE_SECONDS
        if self.adapts:
            cache.set(self.key, self.target, LEARNED_SECONDS)


@dataclass(eq=False)
class Batch:
    """One claim: its token and journal, its attempts, the answers so far."""

    token: str
    journal: Journal
    attempts: list
    results: list = field(default_factory=list)
    # When the claims were last renewed (time.monotonic()): connections start
    # no message after two thirds of a lease without one; recovery takes
    # claims after a whole lease.
    renewed_at: float = field(default_factory=time.monotonic)
    lost: bool = False  # the claims are no longer ours (recovery took them)

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.attempts)


def compose(attempt) -> tuple[str, str, bytes]:
    """(MAIL FROM, RCPT TO, the message) for one attempt."""
    run = attempt.run
    mailing = run.mailing
    client = attempt.client
    # A tracked run's parts, with its links rewritten once per message.
    message, tracking = message_tracked(
        run=run, attempt_id=attempt.pk, message=mailing.message
    )
    # The preference link is signed only for a message that shows it: 40 µs
    # a recipient otherwise, measured.
    shows_preferences = client and message_mentions(message, "preferences_url")
    token = verp_token(attempt.pk)
    outgoing = email_prepare(
        mailing=mailing,
        message=message,
        email=attempt.email,
        full_name=client.full_name if client else "",
        attributes=client.attributes if client else None,
        unsubscribe_url=unsubscribe_url(client_id=client.pk, message=token)
        if client
        else "",
        preferences_url=preferences_url(client_id=client.pk, message=token)
        if shows_preferences
        else "",
        reply_to=mailing.message.reply_to,
        message_id=verp_message_id(attempt.pk, site_host(), token),
        tracking=tracking,
        extra_headers=metadata_headers(settings.MAILING_PROVIDER, token),
        from_email=message_sender(mailing.message),
    )
    # The return path names the attempt, so its bounces can be matched; on
    # the client's own domain where they pointed its bounce name at ours.
    sender = verp_address(attempt.pk, token, domain=getattr(run, "return_path", ""))
    recipient = envelope_recipient(outgoing)
    # Here too, not only in the transport: raised before anything is sent,
    # the attempt fails rather than ends unknown.
    envelope_check(sender, recipient)
    data = outgoing.as_bytes()
    # From one of the owner's verified domains: signed with its key (looked
    # up with the claim, core.services.signing.message_signing).
    if key := getattr(run, "dkim", None):
        data = dkim_sign(data, key, *getattr(run, "dkim_also", ()))
    return sender, recipient, data


class Sender:
    """Claim → send → record until nothing is due or the time is up."""

    def __init__(
        self,
        *,
        time_budget: float,
        run_ids=None,
        share: int = 1,
        relay: Relay | None = None,
        relay_owner: int | None = None,
    ):
        """`relay`: a client's own, for the mail of `relay_owner` alone; None:
        the service's, for everyone else's. Raises ValueError for a relay
        rate that is not one."""
        self.run_ids = run_ids
        self.relay, self.relay_owner = relay, relay_owner
        self.stop_at = time.monotonic() + time_budget
        self.lease = settings.DISPATCH_LEASE_SECONDS
        name = relay_name(relay)
        ceiling = relay.ceiling if relay and relay.ceiling else None
        self.concurrency = Concurrency(
            relay=name,
            ceiling=-(-(ceiling or settings.SMTP_MAX_CONCURRENCY) // max(1, share)),
            # SMTP_CONCURRENCY pins the service's relay; a client's adapts.
            pinned=None if relay else settings.SMTP_CONCURRENCY or None,
        )
        self.limiter = RateLimiter(
            relay.rate if relay else settings.SMTP_RATE_LIMIT,
            key=f"dispatch:rate:{name}",
        )
        # Connections and, when stopping, the main thread take from `work`:
        # queue.Queue, because SimpleQueue.get with a timeout can block for
        # good when another consumer empties it first (CPython 3.11).
        self.work = queue.Queue()
        self.answers = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.connecting = threading.Lock()
        self.threads = []  # connection threads alive
        self.connected = 0  # sessions open now
        self.refusals = 0  # refused opens since one succeeded
        self.stopping = False
        self.unreachable = ""
        self.starved = False  # a connection found no work since the last measure
        # The count whose first whole window has passed: in that first one
        # its connections were still opening (connect, EHLO), and measured,
        # the next count always looked faster, whatever the server.
        self.warmed = None
        self.streaks = {}  # run id → failures in a row, counting the run's own
        # run id → the run's paused_until when its streak was seeded (or
        # PAUSE_RECORDED): a claim that finds another value starts the count
        # again from the run's own.
        self.streaks_seen = {}

    # --- the main thread ---------------------------------------------------

    def run(self, *, progress=None) -> Summary:
        summary = Summary()
        batches = []
        exhausted = False
        renew_at = time.monotonic() + self.lease / 3
        measured_at, answered = time.monotonic(), 0
        stuck_since = None
        try:
            while True:
                now = time.monotonic()
                if now >= self.stop_at:
                    self.stopping = True
                wanted = not (self.stopping or self.unreachable or exhausted)
                if wanted and len(batches) < AHEAD:
                    batch = self._claim()
                    if batch is None:
                        exhausted = True
                    else:
                        batches.append(batch)
                    continue
                if not batches:
                    return summary
                # Connections start once there is work for them, so whatever
                # they meet (no server, no transport) is told to that work.
                self._scale()
                if self.stopping or self.unreachable:
                    self._release_waiting()
                answered += self._collect(timeout=0.05)
                for batch in [batch for batch in batches if batch.done]:
                    # Out of `batches` only once recorded: should recording
                    # fail, the finally below still lets go of the journal's
                    # lock, and recovery settles the claim from it.
                    recorded = results_record(batch.results)
                    self._paused_recorded(batch)
                    batches.remove(batch)
                    batch.journal.close(remove=True)
                    summary.add(recorded)
                    exhausted = False  # retries may be due again
                    if progress:
                        progress(recorded)
                now = time.monotonic()
                if now >= renew_at and batches:
                    self._renew(batches, now=now)
                    renew_at = now + self.lease / 3
                elapsed = now - measured_at
                enough = MEASURE_ANSWERS_PER_CONNECTION * len(self.threads)
                if elapsed >= MEASURE_SECONDS and answered >= enough:
                    target = self.concurrency.target
                    # Judged only once every session of the count is open: on
                    # a loaded machine a slow server's sessions may take more
                    # than a window to open, and a window with some still
                    # opening makes the next count look faster.
                    if (
                        self.starved
                        or len(self.threads) != target
                        or self.connected < target
                    ):
                        pass
                    elif self.warmed != target:
                        self.warmed = target
                    else:
                        self.concurrency.observe(rate=answered / elapsed)
                    measured_at, answered, self.starved = now, 0, False
                # Should answers stop coming with no connection left to give
                # them, the batches go to recovery rather than wait forever.
                if self.threads or not (self.stopping or self.unreachable):
                    stuck_since = None
                elif stuck_since is None:
                    stuck_since = now
                elif now - stuck_since > self.lease:
                    logger.error(
                        "Answers missing for claims %s; left to recovery",
                        ", ".join(batch.token for batch in batches),
                    )
                    return summary
        finally:
            self._close()
            for batch in batches:
                # Never recorded: the journal stays, and its lock goes when it
                # is closed; the next tick settles these claims from it.
                batch.journal.close(remove=False)

    def _claim(self) -> Batch | None:
        token = token_new()
        journal = Journal(token)
        try:
            attempts = attempts_claim(
                token=token,
                limit=settings.DISPATCH_BATCH_SIZE,
                now=timezone.now(),
                run_ids=self.run_ids,
                relay_owner=self.relay_owner,
            )
        except BaseException:
            # The claim's transaction rolled back: nothing is ours to settle.
            journal.close(remove=True)
            raise
        if not attempts:
            journal.close(remove=True)
            return None
        batch = Batch(token=token, journal=journal, attempts=attempts)
        with self.lock:
            for run in {attempt.run for attempt in attempts}:
                seen = self.streaks_seen.get(run.pk, run.paused_until)
                if seen != run.paused_until:
                    self.streaks[run.pk] = run.consecutive_failures
                    self.streaks_seen[run.pk] = run.paused_until
        for attempt in attempts:
            self.work.put((batch, attempt))
        return batch

    def _renew(self, batches, *, now) -> None:
        """The heartbeat; a batch whose claims were taken from us stops."""
        for batch in batches:
            renewed = claims_renew(token=batch.token)
            if renewed < len(batch.attempts):
                logger.error(
                    "Claim %s was taken by recovery; its sends stop", batch.token
                )
                batch.lost = True
            else:
                batch.renewed_at = now

    def _collect(self, *, timeout: float) -> int:
        """Take the answers in; how many were handed to the server."""
        tried = 0
        try:
            item = self.answers.get(timeout=timeout)
        except queue.Empty:
            return 0
        while True:
            batch, result = item
            batch.results.append(result)
            tried += result.tried
            try:
                item = self.answers.get_nowait()
            except queue.Empty:
                return tried

    def _release_waiting(self) -> None:
        """Stopping, or no server: what waits goes back to the queue."""
        while True:
            try:
                batch, attempt = self.work.get_nowait()
            except queue.Empty:
                return
            self.answers.put(
                (batch, Result(attempt, Outcome.RELEASED, self.unreachable))
            )

    def _scale(self) -> None:
        """Start connection threads up to the target (they retire themselves
        when above it)."""
        if self.stopping or self.unreachable:
            return
        with self.lock:
            missing = self.concurrency.wanted() - len(self.threads)
        for _ in range(missing):
            thread = threading.Thread(target=self._connection, daemon=True)
            with self.lock:
                self.threads.append(thread)
            thread.start()

    def _close(self) -> None:
        self.stopping = True
        for thread in list(self.threads):
            thread.join()
        self.concurrency.finish()

    # --- connection threads --------------------------------------------------

    def _connection(self) -> None:
        me = threading.current_thread()
        me.counted = False  # counted among the open sessions
        transport = None
        try:
            transport = transport_open(self.relay)
            while not self._retire(me):
                try:
                    batch, attempt = self.work.get(timeout=0.05)
                except queue.Empty:
                    if self.stopping or self.unreachable:
                        return
                    self.starved = True
                    continue
                result, stay = self._attempt(transport, attempt, batch)
                if me.counted and not transport.is_open:
                    self._uncount(me)  # the session ended (dropped, or 421)
                if result is None:
                    self.work.put((batch, attempt))  # for another connection
                else:
                    self._track_streak(result)
                    self.answers.put((batch, result))
                if not stay:
                    return
        except Exception as error:  # no transport for this configuration
            logger.exception("No connection to the relay")
            self.unreachable = UNREACHABLE.format(error)
        finally:
            if me.counted:
                self._uncount(me)
            if transport is not None:
                transport.close()
            with self.lock:
                if me in self.threads:
                    self.threads.remove(me)

    def _retire(self, me) -> bool:
        """Whether this thread is above the target and should stop; threads
        without a session go first, so no working session is dropped."""
        with self.lock:
            excess = len(self.threads) - self.concurrency.wanted()
            waiting = len(self.threads) - self.connected
            if excess > 0 and (not me.counted or waiting <= 0):
                self.threads.remove(me)  # no longer counted as one
                return True
        return False

    def _uncount(self, me) -> None:
        with self.lock:
            self.connected -= 1
        me.counted = False

    def _attempt(self, transport, attempt, batch) -> tuple[Result | None, bool]:
        """`_handle`, whose failures end as the attempt's result: "unknown"
        once the message may have reached the server, else released."""
        handed = []
        try:
            return self._handle(transport, attempt, batch, handed)
        except Exception as error:  # a journal on a full disk, a rate limit
            # whose cache is down: this delivery stops; the next tick tries
            logger.exception("Attempt %s: sending failed", attempt.pk)
            transport.close()
            self.unreachable = f"sending stopped: {error}"
            if handed:
                return Result(attempt, Outcome.UNKNOWN, f"not known: {error}"), False
            return Result(attempt, Outcome.RELEASED, self.unreachable), False

    def _handle(self, transport, attempt, batch, handed) -> tuple[Result | None, bool]:
        """The attempt's result (None: give it to another connection), and
        whether this connection stays."""
        if (
            self.unreachable
            or self.stopping
            or batch.lost
            or time.monotonic() - batch.renewed_at > self.lease * 2 / 3
        ):
            return Result(attempt, Outcome.RELEASED, self.unreachable), True
        if self._paused(attempt.run):
            return Result(attempt, Outcome.PAUSED), True
        if problem := getattr(attempt.run, "dkim_problem", ""):
            # Never sent unsigned, nor from the service's address instead.
            return Result(attempt, Outcome.PAUSED, problem), True
        if not attempt.may_send:
            reason = DELETED if attempt.client_id is None else UNSUBSCRIBED
            return Result(attempt, Outcome.SKIPPED, reason), True
        # Opening a session and waiting for the rate limit stop before
        # recovery may take the claim, and near the budget. A message under
        # way may outlast them by a server's slow answer: should recovery
        # elsewhere take the claim meanwhile, it writes that message off as
        # unknown (no journal to read), and its late answer is not recorded
        # over that; nothing goes out twice.
        deadline = min(batch.renewed_at + self.lease * 5 / 6, self.stop_at + 5)
        if not transport.is_open:
            # One session opens at a time, so a refusal knows how many others
            # the server took.
            with self.connecting:
                if self.stopping or self.unreachable:
                    return Result(attempt, Outcome.RELEASED, self.unreachable), True
                try:
                    transport.open(deadline=deadline)
                except ConnectionFailed as error:
                    return self._refused(attempt, error)
                me = threading.current_thread()
                with self.lock:
                    self.connected += 1
                    self.refusals = 0
                me.counted = True
        if not self.limiter.acquire(deadline=min(deadline, self.stop_at)):
            return Result(attempt, Outcome.RELEASED), True  # the window is past
        batch.journal.building(attempt.pk)
        try:
            sender, recipient, data = compose(attempt)
        except Exception as error:  # too large once personalised, a bad address
            logger.warning("Attempt %s: message not built: %s", attempt.pk, error)
            return Result(
                attempt, Outcome.FAILED, f"message error: {error}", True
            ), True
        batch.journal.in_flight(attempt.pk)
        handed.append(True)
        reply = transport.send(sender, recipient, data, deadline=deadline)
        outcome = outcome_of(reply)
        batch.journal.answered(attempt.pk, outcome, reply.text)
        stay = True
        if reply.code == 421:
            # The server closed the session: it wants fewer of them.
            self.concurrency.busy()
            stay = False
        return Result(attempt, outcome, reply.text, tried=True), stay

    def _refused(self, attempt, error) -> tuple[Result | None, bool]:
        """A new session was refused: one too many, or no server at all."""
        with self.lock:
            working = self.connected
            self.refusals += 1
            refusals = self.refusals
        if working:
            self.concurrency.refused(working=working)
            return None, False
        if refusals < CONNECT_TRIES:
            # No session open at this moment (others may just be closing):
            # another connection tries again.
            return None, False
        self.unreachable = UNREACHABLE.format(error)
        return Result(attempt, Outcome.RELEASED, self.unreachable), False

    def _paused(self, run) -> bool:
        limit = settings.SMTP_MAX_CONSECUTIVE_ERRORS
        with self.lock:
            if run.pk not in self.streaks:
                self.streaks[run.pk] = run.consecutive_failures
                self.streaks_seen[run.pk] = run.paused_until
            streak = self.streaks[run.pk]
        return bool(limit) and streak >= limit

    def _paused_recorded(self, batch: Batch) -> None:
        """Runs this batch paused start a new count when claimed again.

        They are claimed again once the pause is over or a retry lifted it,
        whatever paused_until then says.
        """
        with self.lock:
            for result in batch.results:
                if result.outcome == Outcome.PAUSED:
                    self.streaks_seen[result.attempt.run_id] = PAUSE_RECORDED

    def _track_streak(self, result: Result) -> None:
        with self.lock:
            run_id = result.attempt.run_id
            if result.outcome == Outcome.SENT:
                self.streaks[run_id] = 0
            elif result.outcome in FAILURES:
                self.streaks[run_id] = self.streaks.get(run_id, 0) + 1
