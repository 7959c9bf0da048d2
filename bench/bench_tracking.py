"""Tracking endpoints under load, and the run's report at scale.

1. Seeds a run of 100,000 sent attempts with three tracked links, starts
   gunicorn (production settings, PostgreSQL) and drives the pixel and the
   click links with wrk for 60 s, 16 connections, each request a different
   recipient's link (two opens to one click). Targets: >= 1,000 requests/s,
   p99 < 50 ms, and as many events in the database afterwards as wrk had
   answers.
2. Grows the run to 1,000,000 attempts and 3,000,000 events, then times the
   run's report page and its attempts filtered by opens (< 300 ms each),
   with the same number of queries as at the small size.

    DATABASE_URL=postgres://... make bench BENCH=tracking   # needs wrk (Debian)

WEB_WORKERS (default 2 × cores + 1) sets gunicorn's processes.
"""

import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.support import (
    BASE_DIR,
    page_measure,
    setup_django,
    summary_print,
    teardown_django,
    verdict,
)

ATTEMPTS = 100_000
BIG_ATTEMPTS = 1_000_000
BIG_EVENTS = 3_000_000
LINKS = [
    "https://shop.example/sale?from=mail",
    "https://shop.example/new",
    "https://blog.example/autumn",
]
SECONDS = 60
CONNECTIONS = 16
PATHS = 20_000
PER_SECOND = 1_000
P99_MS = 50
REPORT_MS = 300
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/128.0"


def seed(count: int):
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from core.models import Attempt, Client, MailingRun
    from core.tests.factories import MailingFactory, MessageFactory, UserFactory

    owner = UserFactory(email="shop@example.com", verified=True, groups=["clients"])
    message = MessageFactory(
        owner=owner,
        html_body="".join(f'<p><a href="{url}">{url}</a></p>' for url in LINKS),
    )
    mailing = MailingFactory(owner=owner, message=message)
    started = timezone.now() - timedelta(hours=3)
    run = MailingRun.objects.create(
        mailing=mailing,
        owner=owner,
        scheduled_for=started,
        started_at=started,
        status=MailingRun.Status.FINISHED,
        sent_count=count,
        total_count=count,
        track_opens=True,
        track_clicks=True,
        track_recipients=True,
        links=LINKS,
    )
    client, attempt = Client._meta.db_table, Attempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {client} (owner_id, email, full_name, comment, attributes,"
            " created_at, updated_at, confirmed_at, source)"
            " SELECT %s, 'r' || n || '@example.org', '', '', '{}', now(), now(),"
            " now(), 'admin' FROM generate_series(1, %s) n",
            [owner.pk, count],
        )
        cursor.execute(
            f"INSERT INTO {attempt} (run_id, owner_id, client_id, email, status, tries,"
            " server_response, attempted_at, created_at, claim_token)"
            " SELECT %s, %s, id, email, 'sent', 1, '250 ok', %s, now(), ''"
            f" FROM {client} WHERE owner_id = %s",
            [run.pk, owner.pk, started, owner.pk],
        )
    return run, owner


def paths_write(run, path: Path) -> None:
    """A wrk script that asks for a different recipient's link each time."""
    from core.models import Attempt
    from core.services.mail.tracking import tracking_token

    ids = list(
        Attempt.objects.filter(run=run).values_list("pk", flat=True)[: PATHS * 2]
    )
    rng = random.Random(7)
    rng.shuffle(ids)
    lines = []
    for n, pk in enumerate(ids[:PATHS]):
        token = tracking_token(run_id=run.pk, attempt_id=pk)
        if n % 3 == 2:
            lines.append(f'"/t/c/{token}/{1 + n % len(LINKS)}/"')
        else:
            lines.append(f'"/t/o/{token}/"')
    path.write_text(
        "paths = {" + ",\n".join(lines) + "}\n"
        "counter = 0\n"
        f'wrk.headers["User-Agent"] = "{AGENT}"\n'
        "request = function()\n"
        "  counter = counter + 1\n"
        "  return wrk.format('GET', paths[(counter % #paths) + 1])\n"
        "end\n"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_start(database: dict, port: int, log: Path) -> subprocess.Popen:
    from django.conf import settings

    workers = int(os.environ.get("WEB_WORKERS", 2 * os.cpu_count() + 1))
    url = (
        f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )
    env = {
        **os.environ,
        "DEBUG": "False",
        # The key the links were signed with here.
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "False",
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        # As example.env has it for production: a connection per worker, kept.
        "CONN_MAX_AGE": "60",
        "ENV_FILE": "/nonexistent",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "project.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--backlog",
            "2048",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start: " + log.read_text()[-2000:])


def wrk(port: int, script: Path, seconds: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99[2]]
    return {
        "requests": requests,
        "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p99_ms": float(p99[1]) * scale,
        "bad": int(errors[1]) if errors else 0,
        "socket_errors": socket_errors[1] if socket_errors else "",
        "text": out,
    }


def endpoints(run, database) -> bool:
    from core.models import Event

    work = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    script = work / "paths.lua"
    paths_write(run, script)
    port = free_port()
    server = gunicorn_start(database, port, work / "gunicorn.log")
    try:
        wrk(port, script, 5)  # warm: connections, plans, each worker's caches
        time.sleep(1)  # what was in flight is recorded
        before = Event.objects.count()
        result = wrk(port, script, SECONDS)
        time.sleep(1)
        recorded = Event.objects.count() - before
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
    answered = result["requests"] - result["bad"]
    rate_ok = result["per_second"] >= PER_SECOND
    p99_ok = result["p99_ms"] < P99_MS
    # wrk stops with up to one request a connection in flight, answered and
    # recorded or not: the counts may differ by that much, no more.
    kept_ok = result["bad"] == 0 and abs(recorded - answered) <= CONNECTIONS
    print(
        f"pixel and clicks    {result['per_second']:8.0f} req/s  "
        f"{verdict(rate_ok)} (target >= {PER_SECOND})"
    )
    print(f"p99 latency         {result['p99_ms']:8.1f} ms     {verdict(p99_ok)}")
    print(
        f"events recorded     {recorded:8d} of {answered} answered  "
        f"{verdict(kept_ok)}"
        + (f"  ({result['socket_errors']})" if result["socket_errors"] else "")
    )
    shutil.rmtree(work, ignore_errors=True)
    return rate_ok and p99_ok and kept_ok


def grow(run, owner) -> None:
    """The run at 1,000,000 attempts and 3,000,000 events, people and
    machines, opens and clicks, over its first two days."""
    from django.db import connection

    from core.models import Attempt, Client, Event

    client, attempt, event = (
        Client._meta.db_table,
        Attempt._meta.db_table,
        Event._meta.db_table,
    )
    from datetime import timedelta

    from django.utils import timezone

    from core.models import MailingRun
    from core.services.events import events_count_hours

    have = Attempt.objects.filter(run=run).count()
    more = BIG_ATTEMPTS - have
    # Sent two days ago, so its first 48 hours are over.
    run.started_at = timezone.now() - timedelta(hours=50)
    MailingRun.objects.filter(pk=run.pk).update(started_at=run.started_at)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {client} (owner_id, email, full_name, comment, attributes,"
            " created_at, updated_at, confirmed_at, source)"
            " SELECT %s, 'big' || n || '@example.org', '', '', '{}', now(), now(),"
            " now(), 'admin' FROM generate_series(1, %s) n",
            [owner.pk, more],
        )
        cursor.execute(
            f"INSERT INTO {attempt} (run_id, owner_id, client_id, email, status, tries,"
            " server_response, attempted_at, created_at, claim_token)"
            " SELECT %s, %s, c.id, c.email, 'sent', 1, '250 ok', %s, now(), ''"
            f" FROM {client} c WHERE c.owner_id = %s AND c.email LIKE 'big%%'",
            [run.pk, owner.pk, run.started_at, owner.pk],
        )
        have_events = Event.objects.filter(run=run).count()
        # Three events for each attempt in turn until 3,000,000: opens mostly,
        # one in ten a click on one of the links, one in eight a machine's.
        cursor.execute(
            f"INSERT INTO {event} (owner_id, run_id, attempt_id, kind, at, severity,"
            " status, detail, url, is_machine, source, fingerprint)"
            " SELECT %(owner)s, %(run)s, e.id,"
            " CASE WHEN e.k %% 10 = 0 THEN 'click' ELSE 'open' END,"
            " %(start)s + ((e.id * 7 + e.k) %% 172800) * interval '1 second',"
            " '', '', CASE WHEN e.k %% 8 = 0 THEN 'machine:early' ELSE '' END,"
            " CASE WHEN e.k %% 10 = 0 THEN (ARRAY[%(l1)s, %(l2)s, %(l3)s])"
            "[1 + e.k %% 3] ELSE '' END,"
            " e.k %% 8 = 0, 'pixel', ''"
            " FROM (SELECT a.id, (a.r - 1) * 3 + g.n AS k"
            f"  FROM (SELECT id, row_number() OVER (ORDER BY id) r FROM {attempt}"
            "   WHERE run_id = %(run)s) a"
            "  CROSS JOIN generate_series(1, 3) g(n)) e"
            " WHERE e.k <= %(events)s",
            {
                "owner": owner.pk,
                "run": run.pk,
                "start": run.started_at,
                "l1": LINKS[0],
                "l2": LINKS[1],
                "l3": LINKS[2],
                "events": BIG_EVENTS - have_events,
            },
        )
        # People's first opens and clicks stamped, as recording does.
        cursor.execute(
            f"UPDATE {attempt} a"
            " SET opened_at = e.first_open, clicked_at = e.first_click"
            " FROM (SELECT attempt_id, min(at) first_open,"
            " min(at) FILTER (WHERE kind = 'click') first_click"
            f" FROM {event} WHERE run_id = %s AND NOT is_machine GROUP BY attempt_id) e"
            " WHERE a.id = e.attempt_id",
            [run.pk],
        )
        cursor.execute("ANALYZE")
    started = time.perf_counter()
    rows = events_count_hours()
    print(
        f"hours counted       {time.perf_counter() - started:8.1f} s     "
        f"{rows} hourly rows (the schedule's pass, every 5 minutes)"
    )


def reports(run, owner) -> bool:
    from django.test import Client as Browser

    browser = Browser()
    browser.force_login(owner)
    pages = {
        "run report": f"/admin/core/mailingrun/{run.pk}/change/",
        "attempts, opened": (
            f"/admin/core/attempt/?run__id__exact={run.pk}&followed=opened"
        ),
    }
    # Before the schedule's first pass here; grow() then runs it, as the
    # schedule would once the grown run's hours are over.
    small = {
        name: page_measure(browser, url, repeat=3)[1] for name, url in pages.items()
    }
    started = time.perf_counter()
    grow(run, owner)
    print(
        f"grown to {BIG_ATTEMPTS:,} attempts and {BIG_EVENTS:,} events"
        f" in {time.perf_counter() - started:.0f} s"
    )
    ok = True
    for name, url in pages.items():
        ms, queries = page_measure(browser, url, repeat=5)
        good = ms < REPORT_MS and queries == small[name]
        ok &= good
        print(
            f"{name:<19} {ms:8.1f} ms  {queries} queries (at 100,000: {small[name]})  "
            f"{verdict(good)}"
        )
    return ok


def main():
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk")
        return 1
    # One key for this process, which signs the links, and for gunicorn's
    # production settings, which check them.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    engine = setup_django()
    print(f"database: {engine}")
    if engine != "postgresql":
        print("needs PostgreSQL: set DATABASE_URL")
        teardown_django()
        return 1
    try:
        from django.conf import settings

        started = time.perf_counter()
        run, owner = seed(ATTEMPTS)
        print(
            f"seeded {ATTEMPTS:,} sent attempts"
            f" in {time.perf_counter() - started:.1f} s"
        )
        ok = endpoints(run, settings.DATABASES["default"])
        ok &= reports(run, owner)
    finally:
        teardown_django()
    summary_print(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
