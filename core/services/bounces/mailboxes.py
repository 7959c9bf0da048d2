"""The bounce mailbox, whatever holds it: IMAP, POP3 or a maildir.

`mailbox_open(url)` gives a `Mailbox`: `keys()` lists what is there,
`fetch(keys)` reads messages a batch at a time, `delete(keys)` removes the
processed ones (for IMAP and POP3 when the session ends, so a crash midway
deletes nothing it has not recorded). A key stays the same between
sessions: IMAP's UIDVALIDITY and UID, POP3's UIDL, the maildir file's name.
"""

import imaplib
import mailbox as stdlib_mailbox
import poplib
import ssl
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings

TIMEOUT = 30
PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
# A message larger than this is not downloaded: it is no bounce, and it is
# left where it is, listed for managers.
MAX_BYTES = 5 * 1024 * 1024


class MailboxError(Exception):
    """The mailbox could not be read: unreachable, refused login, bad URL."""


class UndownloadedError(Exception):
    """One message the server would not hand over (what `fetch` gives for it)."""


def mailbox_name(url: str) -> str:
    """The URL without its password: how logs and managers see a mailbox."""
    parts = urlsplit(url)
    if parts.scheme == "maildir":
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


@contextmanager
def mailbox_open(url: str):
    parts = urlsplit(url)
    opener = {
        "imap": _Imap,
        "imaps": _Imap,
        "pop3": _Pop3,
        "pop3s": _Pop3,
        "maildir": _Maildir,
    }.get(parts.scheme)
    if opener is None:
        raise MailboxError(f"BOUNCE_MAILBOX_URL: unknown kind {parts.scheme!r}")
    box = opener(parts)
    try:
        yield box
        box.close(commit=True)
    except BaseException:
        box.close(commit=False)
        raise


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.BOUNCE_MAILBOX_CA_FILE:
        context.load_verify_locations(cafile=settings.BOUNCE_MAILBOX_CA_FILE)
    return context


def _credentials(parts) -> tuple[str, str]:
    if not parts.username:
        raise MailboxError("BOUNCE_MAILBOX_URL names no user")
    return unquote(parts.username), unquote(parts.password or "")


class _Imap:
    def __init__(self, parts):
        user, password = _credentials(parts)
        host, port = parts.hostname, parts.port or PORTS[parts.scheme]
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        try:
            if parts.scheme == "imaps":
                self.imap = imaplib.IMAP4_SSL(
                    host, port, ssl_context=_tls_context(), timeout=TIMEOUT
                )
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=TIMEOUT)
                if "STARTTLS" in self.imap.capabilities:
                    self.imap.starttls(ssl_context=_tls_context())
            self.imap.login(user, password)
            status, data = self.imap.select(_quoted(self.folder))
            if status != "OK":
                raise MailboxError(f"no folder {self.folder!r}: {_said(data)}")
            self.exists = int(_said(data) or 0)
        except (OSError, imaplib.IMAP4.error) as error:
            raise MailboxError(f"IMAP {host}:{port}: {error}") from error
        validity = self.imap.response("UIDVALIDITY")[1]
        self.validity = _said(validity) or "0"
        self.deleted = []

    def keys(self) -> dict[str, int]:
        """Every message's key and size."""
        if not self.exists:
            return {}  # "1:*" of an empty folder is an error on some servers
        status, data = self.imap.uid("FETCH", "1:*", "(RFC822.SIZE)")
        sizes = {}
        for item in data or []:
            line = item.decode() if isinstance(item, bytes) else ""
            uid, size = _item(line, "UID"), _item(line, "RFC822.SIZE")
            if uid:
                sizes[f"{self.validity}:{uid}"] = int(size or 0)
        return sizes

    def fetch(self, keys: list[str]) -> dict[str, bytes]:
        uids = ",".join(key.partition(":")[2] for key in keys)
        if not uids:
            return {}
        try:
            status, data = self.imap.uid("FETCH", uids, "(BODY.PEEK[])")
        except (OSError, imaplib.IMAP4.error) as error:
            raise MailboxError(f"IMAP fetch: {error}") from error
        found = {}
        data = list(data or [])
        for index, item in enumerate(data):
            if isinstance(item, tuple):
                uid = _item(item[0].decode(errors="replace"), "UID")
                if not uid and index + 1 < len(data):
                    # The server may send UID after the message (RFC 3501
                    # lets it): it is then in the line that follows.
                    after = data[index + 1]
                    if isinstance(after, bytes):
                        uid = _item(after.decode(errors="replace"), "UID")
                if uid:
                    found[f"{self.validity}:{uid}"] = item[1]
        return found

    def delete(self, keys: list[str]) -> None:
        self.deleted += [key.partition(":")[2] for key in keys]

    def close(self, *, commit: bool) -> None:
        try:
            if commit and self.deleted:
                for start in range(0, len(self.deleted), 500):
                    uids = ",".join(self.deleted[start : start + 500])
                    self.imap.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
                self.imap.expunge()
            self.imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


class _LongLines:
    """poplib refuses any line over 2 KB ("line too long"), and the session
    is lost with it; returned HTML often has longer ones. Lines up to the
    size of a message we read at all are taken."""

    def _getline(self):
        line = self.file.readline(MAX_BYTES + 1)
        if len(line) > MAX_BYTES:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        if line[-2:] == b"\r\n":
            return line[:-2], len(line)
        if line[:1] == b"\r":
            return line[1:-1], len(line)
        return line[:-1], len(line)


class _POP3(_LongLines, poplib.POP3):
    pass


class _POP3_SSL(_LongLines, poplib.POP3_SSL):
    pass


class _Pop3:
    def __init__(self, parts):
        user, password = _credentials(parts)
        host, port = parts.hostname, parts.port or PORTS[parts.scheme]
        try:
            if parts.scheme == "pop3s":
                self.pop = _POP3_SSL(
                    host, port, context=_tls_context(), timeout=TIMEOUT
                )
            else:
                self.pop = _POP3(host, port, timeout=TIMEOUT)
                try:
                    if "STLS" in self.pop.capa():
                        self.pop.stls(context=_tls_context())
                except poplib.error_proto:
                    pass  # a server without CAPA
            self.pop.user(user)
            self.pop.pass_(password)
            _, listing, _ = self.pop.uidl()
            _, sizes, _ = self.pop.list()
        except (OSError, poplib.error_proto) as error:
            raise MailboxError(f"POP3 {host}:{port}: {error}") from error
        size_of = dict(line.decode().split()[:2] for line in sizes)
        self.numbers, self.sizes = {}, {}
        for line in listing:
            number, uid = line.decode().split()[:2]
            self.numbers[uid] = number
            self.sizes[uid] = int(size_of.get(number, 0))

    def keys(self) -> dict[str, int]:
        return dict(self.sizes)

    def fetch(self, keys: list[str]) -> dict[str, bytes]:
        found = {}
        for key in keys:
            try:
                _, lines, _ = self.pop.retr(self.numbers[key])
            except poplib.error_proto as error:
                # poplib refuses lines over 2 KB ("line too long"): the
                # message is left, listed, and the pass goes on.
                found[key] = UndownloadedError(str(error))
                continue
            except OSError as error:
                raise MailboxError(f"POP3 fetch: {error}") from error
            found[key] = b"\r\n".join(lines) + b"\r\n"
        return found

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.pop.dele(self.numbers[key])

    def close(self, *, commit: bool) -> None:
        try:
            if commit:
                self.pop.quit()  # deletions take effect only here
            else:
                self.pop.rset()
                self.pop.quit()
        except (OSError, poplib.error_proto):
            pass


class _Maildir:
    def __init__(self, parts):
        path = Path(unquote(parts.netloc + parts.path))
        if not path.is_absolute():
            path = Path(settings.BASE_DIR) / path
        # The standard library makes the three folders only for a maildir
        # that does not exist yet: one made by hand as `var/bounces/new/`
        # (what the README suggests) would fail on its missing `cur/`.
        for folder in ("tmp", "new", "cur"):
            (path / folder).mkdir(parents=True, exist_ok=True)
        self.box = stdlib_mailbox.Maildir(path, factory=None, create=True)

    def keys(self) -> dict[str, int]:
        sizes = {}
        for key in self.box.iterkeys():
            try:
                with self.box.get_file(key) as file:
                    file.seek(0, 2)
                    sizes[key] = file.tell()
            except (KeyError, FileNotFoundError):
                continue  # removed meanwhile
        return sizes

    def fetch(self, keys: list[str]) -> dict[str, bytes]:
        found = {}
        for key in keys:
            try:
                found[key] = self.box.get_bytes(key)
            except KeyError:
                continue
        return found

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.box.discard(key)

    def close(self, *, commit: bool) -> None:
        self.box.close()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data) -> str:
    if not data:
        return ""
    first = data[0]
    return first.decode(errors="replace") if isinstance(first, bytes) else str(first)


def _item(line: str, name: str) -> str:
    """A FETCH response's `name value` item."""
    marker = f"{name} "
    start = line.find(marker)
    if start < 0:
        return ""
    value = line[start + len(marker) :].split(" ", 1)[0]
    return value.strip("()")
