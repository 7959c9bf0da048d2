"""A private Dovecot (IMAP and POP3) on loopback ports, for tests.

Everything the instance needs lives in one temporary directory: its config
(nothing is read from /etc/dovecot), its runtime and state directories, a
passwd-file with one account, the maildir and a self-signed certificate. So it
runs beside a system Dovecot, if there is one, without touching it.

The config is written for Dovecot 2.3, the version Debian bookworm ships.
"""

import grp
import imaplib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

DEBIAN_BINARY = "/usr/sbin/dovecot"
START_TIMEOUT = 20  # seconds
IMAP_TIMEOUT = 10  # seconds, for each command of the helpers below


def find_binary() -> str | None:
    """Dovecot's binary; /usr/sbin is often not on a normal user's PATH."""
    found = shutil.which("dovecot")
    if found:
        return found
    if os.access(DEBIAN_BINARY, os.X_OK):
        return DEBIAN_BINARY
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key.

    The IP must be in subjectAltName: Python matches an address given as the
    host against IP entries only, never against the common name.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class Dovecot:
    """One Dovecot instance with one account, `bounces`, and its INBOX.

    `start()` (or the `dovecot` fixture) runs it; a new password is drawn on
    each start. `append`, `count`, `flagged` and `clear` act on the INBOX over
    plain IMAP, as a test's setup and checks need.
    """

    user = "bounces"
    host = "127.0.0.1"

    def __init__(self, binary: str | None = None):
        self.binary = binary or find_binary()
        self.password = ""
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0
        self.directory: Path | None = None
        self.cafile = ""
        self.process: subprocess.Popen | None = None
        self._output = None  # the file dovecot's stdout and stderr go to

    # URLs, as a bounce mailbox would be configured.

    def _url(self, scheme: str, port: int, path: str = "") -> str:
        password = quote(self.password, safe="")
        return f"{scheme}://{self.user}:{password}@{self.host}:{port}{path}"

    @property
    def imap_url(self) -> str:
        return self._url("imap", self.imap_port, "/INBOX")

    @property
    def imaps_url(self) -> str:
        return self._url("imaps", self.imaps_port, "/INBOX")

    @property
    def pop3_url(self) -> str:
        return self._url("pop3", self.pop3_port)

    @property
    def pop3s_url(self) -> str:
        return self._url("pop3s", self.pop3s_port)

    # Running it.

    def start(self) -> "Dovecot":
        if not self.binary:
            raise RuntimeError("Dovecot is not installed")
        self.directory = Path(tempfile.mkdtemp(prefix="dovecot-"))
        try:
            self._prepare()
            self.process = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.directory / "dovecot.conf")],
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            # The master stops its children on SIGTERM.
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._output is not None:
            self._output.close()
            self._output = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _prepare(self) -> None:
        directory = self.directory
        self.password = secrets.token_urlsafe(16)  # no ':' for the passwd-file
        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = free_ports(4)
        cert, key = make_certificate(directory)
        self.cafile = str(cert)
        for name in ("run", "state", "mail"):
            (directory / name).mkdir()
        passwd = directory / "passwd"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        passwd.chmod(0o600)

        if os.geteuid() == 0:
            # Dovecot refuses to open mail as root ("userdb returned 0 as
            # uid") and to run its login processes as root, so as root: mail
            # as nobody, logins as dovenull, the unprivileged user the Debian
            # package creates for them. The rest (auth, config, log) stays
            # root, which reads the key and the passwd-file as they are.
            nobody = pwd.getpwnam("nobody")
            mail_uid, mail_gid = nobody.pw_uid, nobody.pw_gid
            internal_user, internal_group = "root", "root"
            login_user, login_chroot = "dovenull", "login"
            # nobody must get through the temporary directory to the maildir.
            directory.chmod(0o711)
            os.chown(directory / "mail", mail_uid, mail_gid)
        else:
            # Unprivileged, every process runs as the current user; chroot
            # needs root, so the login processes go without.
            mail_uid, mail_gid = os.geteuid(), os.getegid()
            internal_user = login_user = pwd.getpwuid(mail_uid).pw_name
            internal_group = grp.getgrgid(mail_gid).gr_name
            login_chroot = ""

        (directory / "dovecot.conf").write_text(
            CONFIG.format(
                directory=directory,
                cert=cert,
                key=key,
                passwd=passwd,
                mail_uid=mail_uid,
                mail_gid=mail_gid,
                internal_user=internal_user,
                internal_group=internal_group,
                login_user=login_user,
                login_chroot=login_chroot,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                pop3_port=self.pop3_port,
                pop3s_port=self.pop3s_port,
            )
        )
        # What dovecot prints before its own log is open (config errors).
        self._output = open(directory / "output.log", "wb")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = [self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port]
        while waiting:
            if self.process.poll() is not None:
                self._fail(f"Dovecot exited with code {self.process.returncode}")
            try:
                socket.create_connection((self.host, waiting[0]), timeout=1).close()
                waiting.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    self._fail(
                        f"Dovecot did not listen on port {waiting[0]} "
                        f"within {START_TIMEOUT} s"
                    )
                time.sleep(0.05)
        # The ports are the master's; a login proves the rest works too.
        try:
            self.count()
        except (OSError, imaplib.IMAP4.error) as error:
            self._fail(f"Dovecot is up but an IMAP login failed: {error!r}")

    def _fail(self, message: str):
        logs = []
        for name in ("output.log", "dovecot.log"):
            path = self.directory / name
            if path.exists() and path.stat().st_size:
                logs.append(f"--- {name}\n{path.read_text(errors='replace')}")
        raise RuntimeError("\n".join([message, *logs]))

    # The INBOX, over plain IMAP.

    def _imap(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.imap_port, timeout=IMAP_TIMEOUT)
        try:
            imap.login(self.user, self.password)
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def append(self, raw: bytes) -> None:
        """Put one message, as it is, into the INBOX."""
        with self._imap() as imap:
            status, data = imap.append("INBOX", None, None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")

    def count(self) -> int:
        """How many messages the INBOX holds now."""
        with self._imap() as imap:
            status, data = imap.select("INBOX", readonly=True)
            if status != "OK":
                raise RuntimeError(f"SELECT failed: {data!r}")
            return int(data[0])

    def flagged(self) -> int:
        """How many messages in the INBOX carry the \\Flagged flag."""
        with self._imap() as imap:
            imap.select("INBOX", readonly=True)
            status, data = imap.search(None, "FLAGGED")
            if status != "OK":
                raise RuntimeError(f"SEARCH failed: {data!r}")
            return len(data[0].split())

    def clear(self) -> None:
        """Delete every message in the INBOX."""
        with self._imap() as imap:
            status, data = imap.select("INBOX")
            if status != "OK":
                raise RuntimeError(f"SELECT failed: {data!r}")
            if int(data[0]):  # "1:*" is an error on an empty mailbox
                imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                imap.expunge()


# Dovecot 2.3 syntax (2.4 renamed much of it). Only loopback, only these
# four listeners; every path inside the instance's own directory.
CONFIG = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = dovecot-test
log_path = {directory}/dovecot.log

default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}

# One account from a passwd-file; its mail belongs to mail_uid.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={directory}/mail/%u
}}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:~/Maildir

# TLS on the imaps and pop3s ports; passwords in the clear accepted on the
# plain ones too, as a test of imap:// and pop3:// needs.
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login

# Tests try wrong passwords on purpose: refuse them without the usual
# delay (what is left is the 500 ms timer on which dovecot answers failures),
# and never slow down the next logins from 127.0.0.1.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

service imap-login {{
  chroot = {login_chroot}
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot = {login_chroot}
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
}}
"""


@pytest.fixture(scope="session")
def dovecot():
    """A running Dovecot for the whole session (one per xdist worker)."""
    binary = find_binary()
    if binary is None:
        pytest.skip("Dovecot is not installed (.ci/run installs it)")
    server = Dovecot(binary).start()
    yield server
    server.stop()


@pytest.fixture
def dovecot_box(dovecot):
    """The session's Dovecot, its INBOX emptied for this test."""
    dovecot.clear()
    return dovecot
