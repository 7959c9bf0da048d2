"""The send pipeline against a real SMTP server in another process.

A personalised mailing (the recipient's name in the subject and both bodies,
text and HTML) goes to 10,000 recipients through `dispatch_tick()` and the
Django SMTP backend, into an SMTP sink on a loopback port: Postfix's
`smtp-sink` when it is installed, otherwise bench/sink.py's asyncio server.
The same run measures:

- the ceiling: the same messages built by the pipeline's `compose` (tracked
  as a new mailing is by default, and laid out by
  the same fast MIME path) and sent by the same `SmtpTransport` over as many
  connections and threads, with no database;
  the pipeline must reach 70 % of it;
- database queries per message (≤ 0.05), counted on the main thread's
  connection, the only one the pipeline uses (checked: a worker thread that
  opened a connection would be reported);
- a server that takes 20 ms per message: the pipeline over 32 connections
  against `send_mail()` in a loop, one connection per message, as most
  tutorials send (≥ 10× faster; the loop on a sample of 500);
- peak memory sending to 100,000 recipients against 10,000 (≤ 1.2×); the
  100,000 tick stops itself after 180 s, and says so;
- whether SMTP pipelining pays for itself: the ceiling's sender against a
  sink 10 ms away (bench/latency.py, a proxy that delays every byte) that
  offers PIPELINING, and one that does not (≥ 1.3× faster with it).

Every message is checked: recorded as sent, and received by the sink (once
per recipient, where the sink can tell). Seeding happens in the parent;
every measurement runs in a fresh process of its own, so a peak RSS is that
of sending alone. A run takes about four minutes on two cores.

    .venv/bin/python -m bench dispatch
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench dispatch

Set BENCH_SINK=aiosmtpd to use an aiosmtpd server as every sink.
"""

import json
import os
import queue
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

from bench.sink import SinkProcess, free_port, smtp_sink_path
from bench.support import (
    BASE_DIR,
    peak_rss_mb,
    setup_django,
    teardown_django,
    timed,
    verdict,
)

RECIPIENTS = 10_000
BIG_RECIPIENTS = 100_000
CONCURRENCY = 4
SLOW_DELAY_MS = 20
# At 20 ms a message a connection carries at most 50 msg/s, and here rather
# half that: each message also waits for the GIL (about 1.5-2 ms of Python
# per message) and for the sink, both on the same two cores. Ten times a
# 40-odd msg/s loop needs some twenty connections busy at once; 32 leaves
# room (Postfix itself opens up to 20 to one destination by default).
SLOW_CONCURRENCY = 32
SLOW_RECIPIENTS = 4_000
SEQUENTIAL_SAMPLE = 500
TIME_BUDGET = 600  # seconds a tick may take; far above what the phases need
# The 100,000 run stops itself after this long (the tick's own time budget),
# so a slow pipeline cannot stretch the benchmark past a few minutes.
BIG_TIME_BUDGET = 180

TARGET_CEILING_SHARE = 0.70
TARGET_QUERIES_PER_MESSAGE = 0.05
TARGET_SLOW_SPEEDUP = 10
TARGET_RSS_GROWTH = 1.2
# A round trip to a relay in another data centre of the same region.
DISTANT_RTT_MS = 10
DISTANT_COUNT = 1_000
TARGET_PIPELINING_GAIN = 1.3

JOURNAL_DIR = BASE_DIR / "var" / "bench" / "journal"

FIRST_NAMES = ["Анна", "Борис", "Елена", "Фёдор", "John", "Mary", "Peter", "Olga"]
LAST_NAMES = ["Иванова", "Петров", "Смирнова", "Кузнецов", "Smith", "Brown", "Lee"]
PARAGRAPH = (
    "В этом выпуске: что нового в сервисе, три совета по рассылкам и ответы "
    "на вопросы читателей. Спасибо, что остаётесь с нами. "
)
SUBJECT = "{{ client.full_name }}, новости недели"
BODY = (
    "Здравствуйте, {{ client.full_name }}!\n\n"
    + (PARAGRAPH * 3 + "\n\n") * 4
    + "Письмо пришло на {{ client.email }} из рассылки «{{ mailing.title }}».\n"
    "Отписаться: {{ unsubscribe_url }}\n"
)
HTML_BODY = (
    "<html><body><h1>Здравствуйте, {{ client.full_name }}!</h1>"
    + ("<p>" + PARAGRAPH * 3 + "</p>") * 4
    + "<p>Письмо пришло на {{ client.email }} из рассылки "
    '«{{ mailing.title }}». <a href="{{ unsubscribe_url }}">Отписаться</a></p>'
    "</body></html>"
)


def recipient(n: int, tag: str) -> tuple[str, str]:
    """The n-th recipient of a list: (address, full name)."""
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[n // len(FIRST_NAMES) % len(LAST_NAMES)]
    return f"r{n:06d}.{tag}@example.org", f"{first} {last} {n}"


# --- seeding (in the parent, outside every measurement) ---------------------


def seed(*, tag: str, count: int) -> int:
    """An owner with `count` recipients and a mailing to all; its id.

    The mailing starts tomorrow: the phase that sends it makes it due.
    """
    from django.db import connection
    from django.utils import timezone

    from core.models import Client, Mailing, Message, User

    owner = User.objects.create_user(f"owner.{tag}@bench.example", "x")
    message = Message.objects.create(
        owner=owner, subject=SUBJECT, body=BODY, html_body=HTML_BODY
    )
    start = timezone.now() + timedelta(days=1)
    mailing = Mailing.objects.create(
        owner=owner,
        title=f"Новости {tag}",
        message=message,
        start_at=start,
        next_run_at=start,
        periodicity=Mailing.Periodicity.ONCE,
    )
    for first in range(0, count, 5_000):
        Client.objects.bulk_create(
            Client(owner=owner, email=email, full_name=name)
            for email, name in (
                recipient(n, tag) for n in range(first, min(first + 5_000, count))
            )
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Mailing.clients.through._meta.db_table} "
            "(mailing_id, client_id) "
            f"SELECT %s, id FROM {Client._meta.db_table} WHERE owner_id = %s",
            [mailing.pk, owner.pk],
        )
    return mailing.pk


def run_phase(name: str, db_name: str, **arguments) -> dict:
    """Run one measurement in a fresh interpreter; return its figures."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_dispatch",
            "--phase",
            name,
            json.dumps(arguments),
        ],
        cwd=BASE_DIR,
        env={**os.environ, "BENCH_DB_NAME": db_name},
        capture_output=True,
        text=True,
    )
    if completed.returncode:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"phase {name} failed")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- phases, each in its own process ----------------------------------------


def connect(*, port: int, concurrency: int = CONCURRENCY, processes: int = 1):
    """Django on the parent's database, mail to the sink on `port`."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # The development settings (no SECRET_KEY needed); DEBUG goes off below.
    os.environ.setdefault("DEBUG", "True")
    os.environ.setdefault("ENV_FILE", str(BASE_DIR / ".env"))
    os.environ["AXES_ENABLED"] = "False"
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False
    settings.DATABASES["default"]["NAME"] = os.environ["BENCH_DB_NAME"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.SMTP_CONCURRENCY = concurrency
    # One process, as the ceiling has, unless a phase asks for helpers.
    settings.DISPATCH_PROCESSES = processes
    settings.SMTP_RATE_LIMIT = ""
    settings.DISPATCH_JOURNAL_DIR = JOURNAL_DIR


def phase_send(
    *,
    mailing_id: int,
    port: int,
    concurrency: int,
    processes: int = 1,
    time_budget: float = TIME_BUDGET,
) -> dict:
    """Make the mailing due and time one `dispatch_tick()` sending all of it.

    With `processes` > 1 the tick may fork helpers (PostgreSQL); their CPU
    time is counted, their queries are not.
    """
    connect(port=port, concurrency=concurrency, processes=processes)
    from django.db import connection
    from django.db.backends.signals import connection_created
    from django.db.models import Count
    from django.utils import timezone

    from core.models import Attempt, Mailing, MailingRun
    from core.services.dispatch import dispatch_tick

    due = timezone.now() - timedelta(seconds=1)
    Mailing.objects.filter(pk=mailing_id).update(start_at=due, next_run_at=due)
    rss_before = peak_rss_mb()

    # Connections are per thread: a worker thread that touched the database
    # would open its own, unseen by the wrapper below.
    other_threads = []

    def on_connect(sender, connection, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            other_threads.append(threading.current_thread().name)

    connection_created.connect(on_connect)
    queries = Counter()

    def count(execute, sql, params, many, context):
        queries[sql.split(None, 1)[0].upper()] += 1
        return execute(sql, params, many, context)

    batches = []
    cpu = time.process_time() + children_cpu()
    with connection.execute_wrapper(count), timed() as clock:
        summary = dispatch_tick(time_budget=time_budget, progress=batches.append)
    cpu = time.process_time() + children_cpu() - cpu
    peak = peak_rss_mb()

    run = MailingRun.objects.get(mailing_id=mailing_id)
    statuses = dict(
        Attempt.objects.filter(run=run)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "seconds": clock["seconds"],
        "cpu_seconds": cpu,
        "sent": summary.sent,
        "statuses": statuses,
        "run_status": run.status,
        "queries": sum(queries.values()),
        "queries_by_kind": dict(queries),
        "batches": len(batches),
        "other_thread_connections": other_threads,
        "rss_before_mb": rss_before,
        "peak_mb": peak,
    }


def children_cpu() -> float:
    """CPU seconds of this process's ended children (delivery helpers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stand_ins(tag: str):
    """Unsaved rows shaped like the seeded ones, the run tracking what a new
    mailing tracks by default: `compose` needs no query for them."""
    from core.models import Mailing, MailingRun, Message, User
    from core.services.mail.tracking import links_found

    owner = User(pk=1, email=f"owner.{tag}@bench.example")
    message = Message(owner=owner, subject=SUBJECT, body=BODY, html_body=HTML_BODY)
    mailing = Mailing(pk=1, owner=owner, title=f"Новости {tag}", message=message)
    run = MailingRun(
        pk=1,
        mailing=mailing,
        track_opens=mailing.track_opens,
        track_clicks=mailing.track_clicks,
        track_recipients=mailing.track_recipients,
        links=links_found(text=message.body, html_body=message.html_body)
        if mailing.track_clicks
        else [],
    )
    return run


def phase_ceiling(*, port: int, concurrency: int, count: int, tag: str) -> dict:
    """The same messages, transport and threads as the pipeline; no database."""
    connect(port=port, concurrency=concurrency)
    from core.models import Attempt, Client
    from core.services.dispatch.outcome import Outcome, outcome_of
    from core.services.dispatch.sending import compose
    from core.services.mail.smtp import SmtpTransport

    run = _stand_ins(tag)
    work = queue.SimpleQueue()
    for n in range(count):
        work.put(n)
    results = []

    def connection_loop(transport):
        while True:
            try:
                n = work.get_nowait()
            except queue.Empty:
                return
            email, full_name = recipient(n, tag)
            # The pipeline's own message for an attempt: tracked links and
            # pixel, unsubscribe link, return path and Message-ID.
            client = Client(pk=n + 1, email=email, full_name=full_name)
            attempt = Attempt(pk=n + 1, run=run, client=client, email=email)
            reply = transport.send(*compose(attempt))
            results.append(outcome_of(reply))

    transports = [SmtpTransport() for _ in range(concurrency)]
    threads = [
        threading.Thread(target=connection_loop, args=(t,), daemon=True)
        for t in transports
    ]
    cpu = time.process_time()
    with timed() as clock:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    cpu = time.process_time() - cpu
    for transport in transports:
        transport.close()
    return {
        "seconds": clock["seconds"],
        "cpu_seconds": cpu,
        "sent": results.count(Outcome.SENT),
        "peak_mb": peak_rss_mb(),
    }


def phase_sequential(*, port: int, count: int, tag: str) -> dict:
    """`send_mail()` in a loop: a new SMTP connection for every message."""
    connect(port=port)
    from django.conf import settings
    from django.core.mail import send_mail

    from core.services.mail.templates import message_context, message_render
    from core.services.unsubscribe import unsubscribe_url

    run = _stand_ins(tag)
    mailing, message = run.mailing, run.mailing.message
    sent = 0
    cpu = time.process_time()
    with timed() as clock:
        for n in range(count):
            email, full_name = recipient(n, tag)
            context = message_context(
                client=SimpleNamespace(email=email, full_name=full_name),
                mailing=mailing,
                unsubscribe_url=unsubscribe_url(client_id=n + 1),
            )
            subject, text, html = message_render(message=message, context=context)
            sent += send_mail(
                subject,
                text,
                settings.MAILING_FROM_EMAIL,
                [email],
                html_message=html,
            )
    return {
        "seconds": clock["seconds"],
        "cpu_seconds": time.process_time() - cpu,
        "sent": sent,
        "peak_mb": peak_rss_mb(),
    }


PHASES = {
    "send": phase_send,
    "ceiling": phase_ceiling,
    "sequential": phase_sequential,
}


# --- the report -------------------------------------------------------------


def sink_for(delay_ms: int = 0) -> SinkProcess:
    prefer_postfix = os.environ.get("BENCH_SINK", "") != "aiosmtpd"
    return SinkProcess(delay_ms=delay_ms, prefer_postfix=prefer_postfix)


def measure(name: str, db_name: str, *, delay_ms: int = 0, **arguments) -> tuple:
    """Run a phase against a fresh sink; return (figures, what the sink got)."""
    with sink_for(delay_ms) as sink:
        figures = run_phase(name, db_name, port=sink.port, **arguments)
        return figures, sink.stop()


def measure_distant(db_name: str, *, pipelining: bool) -> tuple:
    """The ceiling's sender against a sink DISTANT_RTT_MS away (bench/latency.py),
    which offers PIPELINING or not."""
    prefer_postfix = os.environ.get("BENCH_SINK", "") != "aiosmtpd"
    with SinkProcess(prefer_postfix=prefer_postfix, pipelining=pipelining) as sink:
        port = free_port()
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.latency",
                "--port",
                str(port),
                "--to",
                str(sink.port),
                "--delay-ms",
                str(DISTANT_RTT_MS / 2),
            ],
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proxy.stdout.readline().strip() == "ready"
            figures = run_phase(
                "ceiling",
                db_name,
                port=port,
                concurrency=CONCURRENCY,
                count=DISTANT_COUNT,
                tag="far",
            )
        finally:
            proxy.terminate()
            proxy.wait()
        return figures, sink.stop()


def delivered(figures: dict, received: dict, expected: int) -> tuple[bool, str]:
    """Every message recorded as sent arrived, once; all `expected` of them."""
    at_sink = received.get("messages", 0)
    ok = figures["sent"] == expected and at_sink == expected
    text = f"{figures['sent']:,} sent, sink got {at_sink:,}"
    if "recipients" in received:
        ok &= received["recipients"] == at_sink and received["max_copies"] == 1
        text += f" for {received['recipients']:,} recipients"
    if "statuses" in figures:
        ok &= figures["statuses"] == {"sent": expected}
        ok &= figures["run_status"] == "finished"
    return ok, text


def rate(figures: dict) -> float:
    return figures["sent"] / figures["seconds"]


def cpu_ms(figures: dict) -> float:
    """CPU time of the sending process (all its threads) per message."""
    return figures["cpu_seconds"] * 1000 / max(figures["sent"], 1)


def main():
    engine = setup_django()
    from django.conf import settings
    from django.db import connection

    missed = []

    def report(label, ok, text):
        if not ok:
            missed.append(label)
        print(f"{label:<30} {text}  {verdict(ok)}", flush=True)

    try:
        with timed() as seeding:
            mailing = seed(tag="main", count=RECIPIENTS)
            slow_mailing = seed(tag="slow", count=SLOW_RECIPIENTS)
            big_mailing = seed(tag="big", count=BIG_RECIPIENTS)
            with connection.cursor() as cursor:
                cursor.execute(
                    "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
                )
        connection.close()  # the phases have the database to themselves
        db_name = str(settings.DATABASES["default"]["NAME"])
        fast, slow = sink_for(), sink_for(SLOW_DELAY_MS)
        print(
            f"database: {engine}; seeded "
            f"{RECIPIENTS + SLOW_RECIPIENTS + BIG_RECIPIENTS:,} recipients in "
            f"{seeding['seconds']:.1f} s (not measured); load average "
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
            flush=True,
        )
        print(
            f"sink: {fast.label}"
            + ("" if smtp_sink_path() else " (smtp-sink is not installed)")
            + f"; with a {SLOW_DELAY_MS} ms delay: {slow.label}"
            + (
                " (smtp-sink delays whole seconds only)"
                if slow.kind != fast.kind
                else ""
            ),
            flush=True,
        )

        # 1. The pipeline and its ceiling, on a sink that answers at once.
        # The ceiling runs before and after the pipeline and the faster run
        # counts: a neighbour's load slowing one run cannot flatter the share.
        def run_ceiling(label):
            figures, received = measure(
                "ceiling",
                db_name,
                concurrency=CONCURRENCY,
                count=RECIPIENTS,
                tag="main",
            )
            ok, text = delivered(figures, received, RECIPIENTS)
            report(
                label,
                ok,
                f"{rate(figures):8,.0f} msg/s ({figures['seconds']:.1f} s, "
                f"{CONCURRENCY} connections, CPU {cpu_ms(figures):.2f} ms/msg; "
                f"{text})",
            )
            return figures

        ceiling = run_ceiling("ceiling (no database)")
        pipeline, received = measure(
            "send", db_name, mailing_id=mailing, concurrency=CONCURRENCY
        )
        ok, text = delivered(pipeline, received, RECIPIENTS)
        report(
            f"pipeline, {RECIPIENTS:,}",
            ok,
            f"{rate(pipeline):8,.0f} msg/s ({pipeline['seconds']:.1f} s, "
            f"{CONCURRENCY} connections, CPU {cpu_ms(pipeline):.2f} ms/msg; {text})",
        )
        ceiling = max(ceiling, run_ceiling("ceiling, again"), key=rate)
        share = rate(pipeline) / rate(ceiling)
        report(
            "pipeline share of ceiling",
            share >= TARGET_CEILING_SHARE,
            f"{share:8.1%} of {rate(ceiling):,.0f} msg/s, the faster ceiling run "
            f"(target ≥ {TARGET_CEILING_SHARE:.0%})",
        )
        per_message = pipeline["queries"] / RECIPIENTS
        kinds = ", ".join(
            f"{kind} {n}" for kind, n in sorted(pipeline["queries_by_kind"].items())
        )
        report(
            "queries per message",
            per_message <= TARGET_QUERIES_PER_MESSAGE,
            f"{per_message:8.3f} ({pipeline['queries']} in "
            f"{pipeline['batches']} batches: {kinds}; "
            f"target ≤ {TARGET_QUERIES_PER_MESSAGE})",
        )
        others = pipeline["other_thread_connections"]
        report(
            "worker threads off the DB",
            not others,
            f"{len(others):8} connections opened outside the main thread, "
            "so the count above is complete"
            + (f" ({', '.join(sorted(set(others)))})" if others else ""),
        )

        # 2. A server that takes its time: connections in parallel win.
        slow, received = measure(
            "send",
            db_name,
            delay_ms=SLOW_DELAY_MS,
            mailing_id=slow_mailing,
            concurrency=SLOW_CONCURRENCY,
        )
        ok, text = delivered(slow, received, SLOW_RECIPIENTS)
        ideal = SLOW_CONCURRENCY * 1000 / SLOW_DELAY_MS
        report(
            f"pipeline, {SLOW_DELAY_MS} ms server",
            ok,
            f"{rate(slow):8,.0f} msg/s ({SLOW_RECIPIENTS:,} in "
            f"{slow['seconds']:.1f} s, {SLOW_CONCURRENCY} connections: at most "
            f"{ideal:,.0f}/s; CPU {cpu_ms(slow):.2f} ms/msg; {text})",
        )
        sequential, received = measure(
            "sequential",
            db_name,
            delay_ms=SLOW_DELAY_MS,
            count=SEQUENTIAL_SAMPLE,
            tag="seq",
        )
        ok, text = delivered(sequential, received, SEQUENTIAL_SAMPLE)
        report(
            f"send_mail() loop, {SLOW_DELAY_MS} ms",
            ok,
            f"{rate(sequential):8,.0f} msg/s (a sample of {SEQUENTIAL_SAMPLE:,} in "
            f"{sequential['seconds']:.1f} s, a connection each; {text})",
        )
        speedup = rate(slow) / rate(sequential)
        report(
            "pipeline vs send_mail() loop",
            speedup >= TARGET_SLOW_SPEEDUP,
            f"{speedup:8.1f}× (target ≥ {TARGET_SLOW_SPEEDUP}×)",
        )

        # 3. Memory does not grow with the list.
        big, received = measure(
            "send",
            db_name,
            mailing_id=big_mailing,
            concurrency=CONCURRENCY,
            time_budget=BIG_TIME_BUDGET,
        )
        ok, text = delivered(big, received, BIG_RECIPIENTS)
        if big["sent"] < BIG_RECIPIENTS:
            text += f"; the tick stopped at its {BIG_TIME_BUDGET} s budget"
        report(
            f"pipeline, {BIG_RECIPIENTS:,}",
            ok,
            f"{rate(big):8,.0f} msg/s ({rate(big) / rate(pipeline):.2f}× the "
            f"{RECIPIENTS:,} rate; {big['seconds']:.1f} s, {CONCURRENCY} "
            f"connections, CPU {cpu_ms(big):.2f} ms/msg; {text})",
        )
        growth = big["peak_mb"] / pipeline["peak_mb"]
        report(
            f"peak RSS, {BIG_RECIPIENTS:,} vs {RECIPIENTS:,}",
            growth <= TARGET_RSS_GROWTH,
            f"{growth:8.2f}× ({big['peak_mb']:.0f} MB vs {pipeline['peak_mb']:.0f} "
            f"MB, {pipeline['rss_before_mb']:.0f} MB before sending; "
            f"target ≤ {TARGET_RSS_GROWTH}×)",
        )
        # 4. Pipelining, where it matters: a server a round trip away.
        rates = {}
        for pipelining in (True, False):
            figures, received = measure_distant(db_name, pipelining=pipelining)
            ok, text = delivered(figures, received, DISTANT_COUNT)
            rates[pipelining] = rate(figures)
            report(
                f"{DISTANT_RTT_MS} ms away, "
                + ("pipelined" if pipelining else "one by one"),
                ok,
                f"{rate(figures):8,.0f} msg/s ({DISTANT_COUNT:,} in "
                f"{figures['seconds']:.1f} s, {CONCURRENCY} connections; {text})",
            )
        gain = rates[True] / rates[False]
        report(
            "pipelining pays for itself",
            gain >= TARGET_PIPELINING_GAIN,
            f"{gain:8.2f}× the rate without it (target ≥ {TARGET_PIPELINING_GAIN}×)",
        )
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        teardown_django()
        _remove_leftovers(settings)
    print("ALL OK" if not missed else f"SOME TARGETS MISSED: {', '.join(missed)}")
    if missed:
        sys.exit(1)


def _remove_leftovers(settings):
    """The SQLite file, and the journal directory once empty."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{db['NAME']}{suffix}")
            except FileNotFoundError:
                pass
    try:
        JOURNAL_DIR.rmdir()
    except OSError:  # absent, or holding a journal worth a look
        pass


def main_phase(name: str, arguments: str):
    figures = PHASES[name](**json.loads(arguments))
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--phase":
        main_phase(sys.argv[2], sys.argv[3])
    else:
        main()
