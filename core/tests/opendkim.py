"""OpenDKIM as a second, independent DKIM verifier (Debian's opendkim-tools).

`opendkim-testmsg` verifies a message read on stdin and asks libc's
resolver for the key, which reads only port 53 of /etc/resolv.conf. So the
check runs in a mount namespace of its own (`unshare --mount`, as root)
whose /etc/resolv.conf names a dnsmasq on a loopback address of the test's
own, port 53: the machine's resolver is never touched.
"""

import os
import random
import shutil
import subprocess

import pytest

from .dns import DnsServer

TESTMSG = "/usr/sbin/opendkim-testmsg"


class OpenDkim:
    def __init__(self, tmp_path):
        # A loopback address nobody else uses (all of 127/8 is loopback).
        host = f"127.{random.randrange(64, 250)}.{random.randrange(1, 250)}.7"
        self.dns = DnsServer(tmp_path, host=host, port=53)
        self.resolv = tmp_path / "resolv.conf"
        self.resolv.write_text(f"nameserver {host}\n")

    def publish(self, records: dict[str, list[str]]) -> None:
        self.dns.publish(records)

    def verify(self, data: bytes) -> tuple[bool, str]:
        """Whether OpenDKIM finds the message's signature good, and what it said."""
        done = subprocess.run(
            [
                "unshare",
                "--mount",
                "sh",
                "-c",
                f'mount --bind "{self.resolv}" /etc/resolv.conf && exec {TESTMSG} -C',
            ],
            input=data,
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0, done.stderr.decode(errors="replace").strip()

    def stop(self) -> None:
        self.dns.stop()


@pytest.fixture
def opendkim(tmp_path):
    if not os.path.exists(TESTMSG) or not shutil.which("unshare"):
        pytest.skip("needs Debian's opendkim-tools (opendkim-testmsg) and unshare")
    if os.geteuid() != 0:
        pytest.skip("opendkim-testmsg gets its own resolv.conf in a namespace: root")
    if not shutil.which("dnsmasq") and not os.path.exists("/usr/sbin/dnsmasq"):
        pytest.skip("needs dnsmasq (Debian's dnsmasq-base) for a real DNS server")
    verifier = OpenDkim(tmp_path)
    verifier.publish({})
    yield verifier
    verifier.stop()
