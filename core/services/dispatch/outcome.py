"""Every result a send can have, and what one tick did (DESIGN.md, Dispatch).

The transport reports the server's reply; `outcome_of` says what the reply
means. The journal, the recording and the recovery all speak of these.
"""

from dataclasses import asdict, dataclass
from enum import StrEnum

from core.services.mail.smtp import Reply


class Outcome(StrEnum):
    SENT = "sent"  # the server took the message
    RETRY = "retry"  # 4xx or a lost connection: queued again after a back-off
    FAILED = "failed"  # 5xx, or a message that could not be built
    SKIPPED = "skipped"  # not sent: the recipient may no longer be mailed
    RELEASED = "released"  # never handed to the server: back to the queue
    PAUSED = "paused"  # its run paused after failures in a row: back to the queue
    UNKNOWN = "unknown"  # may have been taken (the worker died, or the answer
    # was lost): never sent again


# What may count as a failure in a row (DESIGN.md, Dispatch 4).
FAILURES = (Outcome.FAILED, Outcome.RETRY)
# The recorded reasons of a skip: the recipient unsubscribed, or the address
# is suppressed (DESIGN.md, List health) without an unsubscribe of its own.
UNSUBSCRIBED = "unsubscribed"
SUPPRESSED = "suppressed"
UNCONFIRMED = "unconfirmed"
DELETED = "recipient deleted"


def outcome_of(reply: Reply) -> Outcome:
    """2xx sent; 4xx or no answer retry later; anything else failed for good.

    No answer after the whole message went out is "unknown": the server may
    have taken it, and at most once means it is not sent again.
    """
    if reply.code is None and reply.content_sent:
        return Outcome.UNKNOWN
    if reply.code is None or 400 <= reply.code < 500:
        return Outcome.RETRY
    if 200 <= reply.code < 300:
        return Outcome.SENT
    return Outcome.FAILED


@dataclass(slots=True)
class Result:
    """One attempt's outcome in a batch, with the server's words."""

    attempt: object
    outcome: Outcome
    response: str = ""
    tried: bool = False  # handed to the server (counts as a try)


@dataclass
class Summary:
    """What a tick, a delivery or a recovery did, counted."""

    runs: int = 0
    skipped_runs: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    retried: int = 0

    def add(self, other: "Summary") -> "Summary":
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    def line(self) -> str:
        return (
            f"runs {self.runs}, sent {self.sent}, failed {self.failed}, "
            f"skipped {self.skipped}, unknown {self.unknown}, "
            f"retrying {self.retried}"
        )
