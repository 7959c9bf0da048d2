"""Bounces and complaints: read, matched to their attempts, acted on.

Doors import from here: the command `process_bounces`, the django-q2 task,
and the send path for a 5xx answered at send time.
"""

from .intake import Intake, bounces_process
from .mailboxes import MailboxError
from .recording import Finding, findings_record

__all__ = [
    "Finding",
    "Intake",
    "MailboxError",
    "bounces_process",
    "findings_record",
]
