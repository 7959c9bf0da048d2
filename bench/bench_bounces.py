"""Reading the bounce mailbox: 10,000 DSNs at >= 200 a second.

Seeds one owner's run of 10,000 sent attempts, writes a DSN for each into a
maildir (the formats of the test samples in turn: Postfix, Gmail, Exchange,
Yandex, Exim, qmail, Mail.ru, a policy block), then times one
`process_bounces` pass: parsing, matching, events, suppressions, deletion.

    make bench BENCH=bounces   # SQLite, or PostgreSQL when DATABASE_URL is set
"""

import mailbox
import tempfile
import time
from pathlib import Path

from bench.support import setup_django, summary_print, teardown_django, verdict

DSNS = 10_000
PER_SECOND = 200
SAMPLES = [
    "postfix_user_unknown.eml",
    "gmail_no_such_user.eml",
    "exchange_not_found.eml",
    "yandex_mailbox_full.eml",
    "exim_plain.eml",
    "qmail_plain.eml",
    "mailru_invalid_mailbox.eml",
    "policy_block.eml",
]
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "core" / "tests" / "bounces"


def seed():
    from django.utils import timezone

    from core.models import Attempt, Client, MailingRun
    from core.tests.factories import MailingFactory, UserFactory

    owner = UserFactory(email="shop@example.com", verified=True, groups=["clients"])
    mailing = MailingFactory(owner=owner)
    run = MailingRun.objects.create(
        mailing=mailing, owner=owner, scheduled_for=timezone.now(), sent_count=DSNS
    )
    clients = Client.objects.bulk_create(
        Client(owner=owner, email=f"r{i:05d}@example.org") for i in range(DSNS)
    )
    Attempt.objects.bulk_create(
        (
            Attempt(
                run=run,
                owner=owner,
                client=client,
                email=client.email,
                status=Attempt.Status.SENT,
                tries=1,
                attempted_at=timezone.now(),
            )
            for client in clients
        ),
        batch_size=2000,
    )
    return list(Attempt.objects.filter(run=run).values_list("pk", "email"))


def fill(path: Path, attempts) -> None:
    from core.services.mail.verp import verp_address, verp_message_id

    texts = [(SAMPLE_DIR / name).read_bytes() for name in SAMPLES]
    box = mailbox.Maildir(path, create=True)
    for n, (pk, email) in enumerate(attempts):
        raw = texts[n % len(texts)]
        values = {
            "verp": verp_address(pk),
            "from": "news@shop.example.com",
            "message_id": verp_message_id(pk, "mail.example.com"),
            "recipient": email,
        }
        for key, value in values.items():
            raw = raw.replace(b"{{" + key.encode() + b"}}", value.encode())
        # Each DSN its own: their Message-IDs differ, as real ones do.
        raw = raw.replace(b"Message-ID: <", f"Message-ID: <{n}.".encode(), 1)
        box.add(raw)


def main():
    engine = setup_django()
    try:
        from django.conf import settings

        from core.models import Event, Suppression
        from core.services.bounces import bounces_process

        # The owner's pause after 10 % bounces would mail; keep it quiet.
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        attempts = seed()
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "bounces"
            fill(path, attempts)
            print(f"database: {engine}; {DSNS:,} DSNs in a maildir")
            start = time.perf_counter()
            intake = bounces_process(url=f"maildir://{path}")
            seconds = time.perf_counter() - start
            left = len(mailbox.Maildir(path, create=False))
        rate = intake.read / seconds
        ok = (
            rate >= PER_SECOND
            and intake.bounces == DSNS
            and left == 0
            and Event.objects.count() == DSNS
        )
        print(
            f"process_bounces  {seconds:6.1f} s  {rate:7.0f} DSNs/s  "
            f"{intake.bounces:,} bounces  {Suppression.objects.count():,} "
            f"suppressed  {left} left  (target >= {PER_SECOND}/s)  {verdict(ok)}"
        )
        summary_print(ok)
    finally:
        teardown_django()


if __name__ == "__main__":
    main()
