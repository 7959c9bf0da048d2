"""The journal of a claim: what its worker handed to the server, and the answers.

At most once, without a database write per message: before each message a
worker appends "in flight" to its claim's journal, a small append-only file
on local disk, and after it the server's answer. Results reach the database
in bulk, once per batch, and then the journal is removed.

The worker holds an exclusive lock (`flock`) on the file for as long as it
holds the claim; the system drops the lock the moment the process dies, by
any signal. So recovery on the same machine knows a holder is gone as soon
as it can take the lock, and then reads what was answered, what was in
flight (one per connection), and what was never started.
"""

import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path

from django.conf import settings

from .outcome import Outcome


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: the machine's tag alone
        return ""


# Claim tokens start with this machine's tag, so recovery knows whose
# journals it can read: the host name and, where the system says, this boot.
# After a crash of the machine, lines not yet on disk may be lost; claims of
# an earlier boot are then not read from their journal but written off as
# unknown, never resent. Stable across processes (unlike hash()).
HOST_TAG = hashlib.sha1(f"{socket.gethostname()} {_boot_id()}".encode()).hexdigest()[:8]
IN_FLIGHT = "in_flight"
# Being built: a worker that dies here dies of the message (or while making
# it), so the attempt fails rather than goes back to the queue to kill the
# next worker too.
BUILDING = "building"


def journal_dir() -> Path:
    path = Path(settings.DISPATCH_JOURNAL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def journal_path(token: str) -> Path:
    return journal_dir() / f"{token}.log"


def is_local(token: str) -> bool:
    return token.startswith(HOST_TAG)


class Journal:
    """An append-only file per claim; each line is one write, never torn."""

    def __init__(self, token: str):
        self.token = token
        self.path = journal_path(token)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self._write("claim")

    def _write(self, line: str) -> None:
        os.write(self.fd, (line.replace("\n", " ") + "\n").encode())

    def building(self, attempt_id: int) -> None:
        self._write(f"b {attempt_id}")

    def in_flight(self, attempt_id: int) -> None:
        self._write(f"i {attempt_id}")

    def answered(self, attempt_id: int, outcome: Outcome, response: str) -> None:
        self._write(f"r {attempt_id} {outcome} {response[:500]}")

    def close(self, *, remove: bool) -> None:
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)


def journal_holder_gone(token: str) -> bool | None:
    """Whether the worker holding this machine's claim `token` is dead.

    True when its journal's lock is free; False while a live process holds
    it; None when there is no journal to ask (it was wiped, or the claim
    is another machine's).
    """
    if not is_local(token):
        return None
    try:
        fd = os.open(journal_path(token), os.O_RDONLY)
    except OSError:  # none, or not ours to read (another user's worker)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock just taken
    return True


def journal_read(token: str) -> dict | None:
    """attempt id → (BUILDING or IN_FLIGHT, "") or (Outcome, response); None
    if absent."""
    try:
        lines = journal_path(token).read_text(errors="replace").splitlines()
    except OSError:
        return None
    states = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "i" and rest.strip().isdigit():
            states[int(rest)] = (IN_FLIGHT, "")
        elif kind == "b" and rest.strip().isdigit():
            states[int(rest)] = (BUILDING, "")
        elif kind == "r":
            attempt_id, _, rest = rest.partition(" ")
            result, _, response = rest.partition(" ")
            if attempt_id.isdigit() and result in Outcome._value2member_map_:
                states[int(attempt_id)] = (Outcome(result), response)
    return states


def journal_remove(token: str) -> None:
    try:
        journal_path(token).unlink(missing_ok=True)
    except OSError:  # another user's file: the sweep of its owner removes it
        pass


def journals_sweep(*, older_than: float, held) -> None:
    """Remove this machine's journals left behind by claims already settled.

    `held(token)` says whether a claim is still open in the database.
    """
    cutoff = time.time() - older_than
    for path in journal_dir().glob("*.log"):
        try:
            if path.stat().st_mtime >= cutoff or held(path.stem):
                continue
            # An earlier boot's journal has no holder; this boot's may.
            if not is_local(path.stem) or journal_holder_gone(path.stem):
                path.unlink(missing_ok=True)
        except OSError:
            continue
