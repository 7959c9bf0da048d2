"""A real DNS server for the tests: dnsmasq on a loopback port.

`published` starts one that answers only for the TXT records a test
publishes (nothing is forwarded anywhere); `publish` replaces them, as an
owner editing their zone would, by restarting it with the new records.
Skipped with a reason where dnsmasq is not installed (CI installs it).
"""

import shutil
import socket
import subprocess
import time

import pytest

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def _free_port() -> int:
    """A port free on 127.0.0.1 for UDP and TCP both (dnsmasq takes both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
            try:
                stream.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _chunks(text: str) -> str:
    """A TXT value as dnsmasq takes it: quoted strings of at most 255."""
    return ",".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


class DnsServer:
    """`host` and `port` default to a free port of 127.0.0.1; a program that
    asks only port 53 of /etc/resolv.conf (libc's resolver) gets a loopback
    address of its own on port 53 instead (`DnsServer(tmp, host=…, port=53)`)."""

    def __init__(self, tmp_path, *, host="127.0.0.1", port=None):
        self.host = host
        self.port = port or _free_port()
        # A port of our choosing may move until the server first starts.
        self.movable = port is None
        self.started = False
        self.config = tmp_path / f"dnsmasq-{host}-{self.port}.conf"
        self.process = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def publish(
        self,
        records: dict[str, list[str]],
        *,
        cnames: dict[str, str] | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        """Serve exactly these TXT records (name → its values), aliases
        (name → the name it stands for) and addresses (name → IPv4)."""
        lines = [
            "no-resolv",
            "no-hosts",
            "bind-interfaces",
            f"listen-address={self.host}",
            "cache-size=0",
            # Answered from the records here alone: no such name, not refused.
            "local=/#/",
        ]
        for name, values in records.items():
            for value in values:
                lines.append(f"txt-record={name},{_chunks(value)}")
        for name, address in (hosts or {}).items():
            lines.append(f"host-record={name},{address}")
        for alias, target in (cnames or {}).items():
            # dnsmasq serves an alias only of a name it holds itself.
            if target not in (hosts or {}):
                lines.append(f"host-record={target},192.0.2.1")
            lines.append(f"cname={alias},{target}")
        self.config.write_text("\n".join(lines) + "\n")
        self.stop()
        # The port was free when chosen; another process may take it before
        # dnsmasq binds it (or the last instance's may linger): try again.
        for attempt in range(5):
            self.process = subprocess.Popen(
                [
                    DNSMASQ,
                    "--keep-in-foreground",
                    "--log-facility=-",  # its errors on stderr
                    f"--port={self.port}",
                    f"--conf-file={self.config}",
                    "--user=",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                self._wait()
                self.started = True
                return
            except RuntimeError:
                if attempt == 4:
                    raise
                if self.movable and not self.started:
                    self.port = _free_port()
                time.sleep(0.2)

    def _wait(self) -> None:
        import dns.message
        import dns.query

        query = dns.message.make_query("ready.test.", "TXT")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode())
            try:
                dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                return
            except Exception:  # not listening yet
                time.sleep(0.05)
        raise RuntimeError("dnsmasq did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def dns_txt(server):
    """dkimpy's DNS lookup, asked of the test's DNS server."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [server.host], server.port

    def dnsfunc(name, timeout=5):
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(b"".join(record.strings) for record in answer)

    return dnsfunc


@pytest.fixture
def dns_server(tmp_path, settings):
    """A DNS server the project's resolver asks, serving what a test publishes."""
    if not shutil.which("dnsmasq") and not shutil.which(DNSMASQ):
        pytest.skip("needs dnsmasq (Debian's dnsmasq-base) for a real DNS server")
    server = DnsServer(tmp_path)
    server.publish({})
    settings.DNS_RESOLVER = server.address
    settings.DNS_TIMEOUT = 2.0
    yield server
    server.stop()
