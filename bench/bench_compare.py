"""Our send path next to the Django mailing apps people use today.

The same personalised mailing as bench_dispatch.py (the recipient's name in
the subject and in both bodies, text and HTML, a signed unsubscribe link) goes
to 10,000 recipients, into the same kind of SMTP sink (Postfix's `smtp-sink`
when installed, otherwise aiosmtpd; a fresh one per run, counting what
arrives), on the same database kind, with no rate limit:

- ours: one `dispatch_tick()` with the default SMTP_CONCURRENCY (4) and
  DISPATCH_PROCESSES (the cores, at most 4: it forks helpers on
  PostgreSQL), in a fresh process on a fresh database (bench_dispatch.py's
  "send" phase);
- django-post-office: `mail.send_many()` with a database template and each
  recipient's context queues the messages (timed apart), then
  `send_queued_mail --processes 2` sends them, timed alone;
- django-newsletter: subscribers, a message and a prepared submission are
  created (timed apart), then `submit_newsletter` sends them, timed alone.

Neither app becomes a dependency of the project: they live in their own
virtualenv, var/bench/venv-compare (created on the first run, reused after),
and run in a throw-away Django project generated into a temporary directory
from bench/compare/ (on SQLite a file there; with DATABASE_URL a PostgreSQL
database per app next to it, created and dropped). Each app sends a small
warm-up mailing first, then the measured one; every step runs in a fresh
process. The verdict: ours sends at least 2× as many messages per second.

    .venv/bin/python -m bench compare
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench compare

BENCH_SINK=aiosmtpd uses the aiosmtpd sink even where smtp-sink exists;
BENCH_PO_PROCESSES, BENCH_PO_THREADS and BENCH_PO_BATCH_SIZE try another
django-post-office configuration; BENCH_OUR_PROCESSES another of ours.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from email.utils import formataddr
from pathlib import Path
from types import SimpleNamespace

from bench.bench_dispatch import (
    BODY,
    HTML_BODY,
    JOURNAL_DIR,
    SUBJECT,
    recipient,
    run_phase,
    seed,
)
from bench.sink import SinkProcess, smtp_sink_path
from bench.support import BASE_DIR, setup_django, teardown_django, timed, verdict

RECIPIENTS = 10_000
WARMUP = 200
CONCURRENCY = 4  # the project's default SMTP_CONCURRENCY
# The project's default DISPATCH_PROCESSES: the cores, at most 4 (helpers
# need PostgreSQL; on SQLite one process sends).
OUR_PROCESSES = int(os.environ.get("BENCH_OUR_PROCESSES", min(os.cpu_count() or 1, 4)))
TARGET_RATIO = 2.0
STEP_TIMEOUT = 600  # seconds any one step may take before it is killed

VENV = BASE_DIR / "var" / "bench" / "venv-compare"
VENV_PYTHON = VENV / "bin" / "python"
TEMPLATE_DIR = BASE_DIR / "bench" / "compare"
# The newest releases on PyPI that declare Django 5.2 support.
REQUIREMENTS = [
    "Django>=5.2,<5.3",
    "django-post-office==3.12.0",
    "psycopg2-binary>=2.9",
]
# Its first migration imports sorl-thumbnail, one of the two thumbnailers its
# README says to install.
NEWSLETTER_REQUIREMENTS = ["django-newsletter==1.2.1", "sorl-thumbnail==13.4.0"]

# django-post-office as its README tunes it for volume: parallel processes
# (one per core here), its default threads per process (each thread keeps
# its own SMTP connection), a batch far larger than the default 100 (its
# README: a smaller one is for low-memory machines; every batch forks a new
# pool of processes and opens new connections), and its default log level
# (one Log row per message, as ours keeps one Attempt row per message).
# On this 2-core machine and SQLite, 10,000 messages went out at about 670
# msg/s with BATCH_SIZE 100, 790 with 1,000, 1,110 with 5,000 and 1,140
# with 10,000 (one batch: within the noise of 5,000), 760 with one process.
PO_PROCESSES = int(os.environ.get("BENCH_PO_PROCESSES", "2"))
PO_SETTINGS = {
    "THREADS_PER_PROCESS": int(os.environ.get("BENCH_PO_THREADS", "5")),
    "BATCH_SIZE": int(os.environ.get("BENCH_PO_BATCH_SIZE", "5000")),
}

APPS = {"post_office": "django-post-office", "newsletter": "django-newsletter"}

# django-newsletter renders its own templates with its own context.
NEWSLETTER_NAMES = {
    "{{ client.full_name }}": "{{ subscription.name }}",
    "{{ client.email }}": "{{ subscription.email }}",
    "{{ mailing.title }}": "{{ newsletter.title }}",
    "{{ unsubscribe_url }}": (
        "{{ site_url }}{% url 'newsletter_update_activate' newsletter.slug "
        "subscription.email 'unsubscribe' subscription.activation_code %}"
    ),
}


class StepFailed(Exception):
    pass


# --- the other apps' virtualenv and project --------------------------------


def pip_install(*requirements) -> str | None:
    """Install into the compare venv; the error's last line, or None."""
    completed = subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", *requirements],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    if completed.returncode == 0:
        return None
    lines = [
        line
        for line in completed.stderr.splitlines()
        if line.strip() and not line.startswith("WARNING")
    ]
    return lines[-1] if lines else f"pip exited {completed.returncode}"


def ensure_venv() -> tuple[str, str | None]:
    """Create var/bench/venv-compare once; (what was done, newsletter error)."""
    marker = VENV / ".bench-requirements"
    error_file = VENV / ".bench-newsletter-error"
    wanted = "\n".join([*REQUIREMENTS, *NEWSLETTER_REQUIREMENTS])
    if VENV_PYTHON.exists() and marker.exists() and marker.read_text() == wanted:
        error = error_file.read_text() if error_file.exists() else None
        return f"reused {VENV.relative_to(BASE_DIR)}", error
    if not VENV_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    error = pip_install(*REQUIREMENTS)
    if error:
        raise StepFailed(f"pip install {' '.join(REQUIREMENTS)}: {error}")
    # Optional: it may not install next to Django 5.2.
    newsletter_error = pip_install(*NEWSLETTER_REQUIREMENTS)
    if newsletter_error:
        error_file.write_text(newsletter_error)
    elif error_file.exists():
        error_file.unlink()
    marker.write_text(wanted)
    return f"created {VENV.relative_to(BASE_DIR)}", newsletter_error


def run_step(project, app, phase, *, port=None, **arguments) -> dict:
    """One runner.py phase in the compare venv; the JSON it printed last.

    It runs in a session of its own, so a step that overruns is killed with
    every process it forked.
    """
    env = {**os.environ, "BENCH_APP": app, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    if port is not None:
        env["BENCH_SMTP_PORT"] = str(port)
    process = subprocess.Popen(
        [str(VENV_PYTHON), "runner.py", phase, json.dumps(arguments)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise StepFailed(f"{app} {phase}: no end after {STEP_TIMEOUT} s") from None
    if process.returncode:
        lines = [line for line in stderr.splitlines() if line.strip()]
        raise StepFailed(
            f"{app} {phase}: " + (lines[-1] if lines else f"exit {process.returncode}")
        )
    return json.loads(stdout.strip().splitlines()[-1])


def write_project(project, *, databases: dict, mailings: dict) -> None:
    """The throw-away project: settings, urls, runner, templates, recipients."""
    from django.conf import settings

    for name in ("settings.py", "urls.py", "runner.py"):
        shutil.copy(TEMPLATE_DIR / name, project / name)
    config = {
        "databases": databases,
        "from_email": settings.MAILING_FROM_EMAIL,
        "site_domain": settings.SITE_DOMAIN,
        "content": {"subject": SUBJECT, "body": BODY, "html_body": HTML_BODY},
        "post_office": PO_SETTINGS,
        "post_office_processes": PO_PROCESSES,
    }
    (project / "config.json").write_text(json.dumps(config, ensure_ascii=False))
    templates = project / "templates" / "newsletter" / "message"
    templates.mkdir(parents=True)
    for name, source in (
        ("message_subject.txt", SUBJECT),
        ("message.txt", BODY),
        ("message.html", HTML_BODY),
    ):
        for ours, theirs in NEWSLETTER_NAMES.items():
            source = source.replace(ours, theirs)
        (templates / name).write_text(source)
    for tag, batch in mailings.items():
        (project / f"recipients-{tag}.json").write_text(
            json.dumps(batch, ensure_ascii=False)
        )


def mailing_batch(*, tag: str, count: int, mailing_id: int) -> dict:
    """What ours sends for a seeded mailing, for the other apps to send."""
    from core.services.mail.message import list_id
    from core.services.unsubscribe import unsubscribe_url

    title = f"Новости {tag}"
    recipients = []
    for n in range(count):
        email, name = recipient(n, tag)
        recipients.append(
            [email, name, formataddr((name, email)), unsubscribe_url(client_id=n + 1)]
        )
    return {
        "title": title,
        "list_id": list_id(mailing=SimpleNamespace(pk=mailing_id, title=title)),
        "reply_to": f"owner.{tag}@bench.example",
        "recipients": recipients,
    }


# --- measurements -----------------------------------------------------------


def new_sink() -> SinkProcess:
    return SinkProcess(prefer_postfix=os.environ.get("BENCH_SINK", "") != "aiosmtpd")


def check_delivery(figures: dict, received: dict, expected: int) -> tuple[bool, str]:
    """All `expected` arrived at the sink, once each; the app agrees."""
    at_sink = received.get("messages", 0)
    ok = at_sink == expected
    text = f"sink got {at_sink:,}"
    if figures.get("sent") is not None:
        ok &= figures["sent"] == expected
        text = f"{figures['sent']:,} recorded sent, " + text
    if "recipients" in received:
        ok &= received["recipients"] == at_sink and received["max_copies"] == 1
        text += f" for {received['recipients']:,} recipients"
    return ok, text


def measure_ours(db_name: str, mailings: dict) -> dict:
    """The warm-up, then the measured mailing, each in a fresh process."""
    results = {}
    for tag, (mailing_id, count) in mailings.items():
        with new_sink() as sink:
            figures = run_phase(
                "send",
                db_name,
                mailing_id=mailing_id,
                port=sink.port,
                concurrency=CONCURRENCY,
                processes=OUR_PROCESSES,
            )
            received = sink.stop()
        ok, text = check_delivery(figures, received, count)
        ok &= figures["statuses"] == {"sent": count}
        results[tag] = {**figures, "ok": ok, "delivery": text}
    return results


def measure_theirs(project, app: str) -> dict:
    """Migrate, warm up, queue and send the measured mailing; its figures."""
    run_step(project, app, "migrate")
    results = {}
    for tag, count in (("warm", WARMUP), ("main", RECIPIENTS)):
        queued = run_step(project, app, "queue", tag=tag)
        if queued["queued"] != count:
            raise StepFailed(f"{app}: {queued['queued']} queued, not {count}")
        with new_sink() as sink:
            figures = run_step(project, app, "send", port=sink.port, tag=tag)
            received = sink.stop()
        ok, text = check_delivery(figures, received, count)
        results[tag] = {
            **figures,
            "queue_seconds": queued["seconds"],
            "ok": ok,
            "delivery": text,
        }
    results["main"]["bytes"] = run_step(project, app, "sample", tag="main")["bytes"]
    return results


def our_message_bytes(mailing_id: int) -> int:
    """Size of the measured mailing's first message as ours sends it."""
    from core.models import Mailing
    from core.services.mail.message import email_prepare
    from core.services.unsubscribe import unsubscribe_url

    mailing = Mailing.objects.select_related("owner", "message").get(pk=mailing_id)
    client = mailing.clients.order_by("pk").first()
    outgoing = email_prepare(
        mailing=mailing,
        message=mailing.message,
        email=client.email,
        full_name=client.full_name,
        unsubscribe_url=unsubscribe_url(client_id=client.pk),
        reply_to=mailing.owner.email,
    )
    return len(outgoing.as_bytes())


def our_version() -> str:
    with open(BASE_DIR / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    return f"{project['name']} {project['version']}"


# --- the report -------------------------------------------------------------


def their_databases(engine: str, project) -> dict:
    """A database per app: a SQLite file in the project, or a PostgreSQL one."""
    from django.conf import settings

    ours = settings.DATABASES["default"]
    if engine == "sqlite3":
        return {
            app: {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(project / f"{app}.sqlite3"),
                # As the project's own settings: wait for a lock, take it
                # when a transaction starts.
                "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            }
            for app in APPS
        }
    # Next to ours (support.py names it <name>_bench_<pid>), as uniquely.
    base, _, pid = ours["NAME"].rpartition("_bench_")
    return {
        app: {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": f"{base or ours['NAME']}_compare_{app}_{pid or os.getpid()}",
            "HOST": ours.get("HOST", ""),
            "PORT": str(ours.get("PORT", "")),
            "USER": ours.get("USER", ""),
            "PASSWORD": ours.get("PASSWORD", ""),
        }
        for app in APPS
    }


def their_database_note(engine: str, databases: dict) -> str:
    if engine == "sqlite3":
        return (
            "the other apps: a file each, with the project's SQLite options: "
            "timeout 20, IMMEDIATE transactions"
        )
    names = ", ".join(db["NAME"] for db in databases.values())
    return f"the other apps: {names} on the same server, created and dropped"


def postgres(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement)


def main():
    engine = setup_django()
    from django import get_version
    from django.conf import settings
    from django.db import connection

    project = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    databases = their_databases(engine, project)
    created = []  # PostgreSQL databases to drop
    rows, problems = [], []
    try:
        with timed() as venv_clock:
            venv_done, newsletter_error = ensure_venv()

        # Ours: recipients and mailings are rows before a tick sends them.
        warm_id = seed(tag="warm", count=WARMUP)
        with timed() as seeding:
            main_id = seed(tag="main", count=RECIPIENTS)
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
            )
        our_bytes = our_message_bytes(main_id)
        write_project(
            project,
            databases=databases,
            mailings={
                "warm": mailing_batch(tag="warm", count=WARMUP, mailing_id=warm_id),
                "main": mailing_batch(tag="main", count=RECIPIENTS, mailing_id=main_id),
            },
        )
        connection.close()  # the tick has the database to itself
        db_name = str(settings.DATABASES["default"]["NAME"])
        sink = new_sink()
        print(
            f"database: {engine} ({their_database_note(engine, databases)}); "
            f"sink: {sink.label}"
            + ("" if smtp_sink_path() else " (smtp-sink is not installed)")
            + f", a fresh one per run; load average {os.getloadavg()[0]:.2f} on "
            f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}, "
            f"Django {get_version()}; {venv_done} in {venv_clock['seconds']:.0f} s",
            flush=True,
        )
        print(
            f"mailing: {RECIPIENTS:,} recipients, the name in the subject and in "
            "both bodies (text and HTML), a signed unsubscribe link; each app "
            f"first sends a warm-up mailing to {WARMUP} others",
            flush=True,
        )

        ours = measure_ours(
            db_name, {"warm": (warm_id, WARMUP), "main": (main_id, RECIPIENTS)}
        )
        if not ours["warm"]["ok"]:
            problems.append(f"ours warm-up: {ours['warm']['delivery']}")
        rows.append(
            {
                "app": "ours (dispatch_tick)",
                "version": our_version().split()[-1],
                **ours["main"],
                "queue_seconds": seeding["seconds"],
                "bytes": our_bytes,
            }
        )
        print(
            f"config ours: {our_version()}, core.services.dispatch.dispatch_tick() "
            f"in a fresh process, DISPATCH_PROCESSES={OUR_PROCESSES} (default: "
            "the cores, at most 4; helpers are forked on PostgreSQL only) with "
            f"SMTP_CONCURRENCY={CONCURRENCY} (default) connections each, "
            "SMTP_RATE_LIMIT off, Django's SMTP "
            "backend; prepare = inserting recipients, message and mailing "
            "(the tick itself creates the run and its attempts, within send)",
            flush=True,
        )

        for app, package in APPS.items():
            if app == "newsletter" and newsletter_error:
                print(
                    f"{package} was not measured: it does not install next to "
                    f"Django 5.2: {newsletter_error}",
                    flush=True,
                )
                continue
            version = {"app": NEWSLETTER_REQUIREMENTS[0].split("==")[-1]}
            try:
                version = run_step(project, app, "versions")
                if engine != "sqlite3":
                    name = databases[app]["NAME"]
                    postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    postgres(f'CREATE DATABASE "{name}"')
                    created.append(name)
                results = measure_theirs(project, app)
            except StepFailed as error:
                if app == "newsletter":
                    print(
                        f"{package} {version['app']} was not measured: {error}",
                        flush=True,
                    )
                    continue
                raise
            rows.append(
                {
                    "app": package,
                    "version": version["app"],
                    **results["main"],
                }
            )
            if not results["warm"]["ok"]:
                problems.append(f"{package} warm-up: {results['warm']['delivery']}")
            print(f"config {package}: {their_config(app, version)}", flush=True)

        report(rows, engine, problems)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    except StepFailed as error:
        problems.append(str(error))
    finally:
        for name in created:
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        teardown_django()
        remove_leftovers(settings)
        shutil.rmtree(project, ignore_errors=True)
    if problems:
        print("SOME TARGETS MISSED: " + "; ".join(problems))
        sys.exit(1)
    print("ALL OK")


def their_config(app: str, version: dict) -> str:
    """What was run, exactly."""
    if app == "post_office":
        return (
            f"{APPS[app]} {version['app']} on Django {version['django']} "
            "(var/bench/venv-compare); EMAIL_BACKEND post_office.EmailBackend, "
            "POST_OFFICE = {BACKENDS: {default: django.core.mail.backends.smtp."
            "EmailBackend}, "
            f"THREADS_PER_PROCESS: {PO_SETTINGS['THREADS_PER_PROCESS']}, "
            f"BATCH_SIZE: {PO_SETTINGS['BATCH_SIZE']}}} (LOG_LEVEL 2, MAX_RETRIES 0: "
            "defaults); prepare = mail.send_many() with an EmailTemplate and each "
            "recipient's context and headers (rendered as it queues: its default); "
            f"send = call_command('send_queued_mail', processes={PO_PROCESSES}) in a "
            f"fresh process: up to {PO_PROCESSES * PO_SETTINGS['THREADS_PER_PROCESS']} "
            "SMTP connections"
        )
    return (
        f"{APPS[app]} {version['app']} on Django {version['django']} "
        "(var/bench/venv-compare); EMAIL_BACKEND django.core.mail.backends.smtp."
        "EmailBackend, NEWSLETTER_THUMBNAIL sorl-thumbnail (a template name "
        "only: no images), no NEWSLETTER_EMAIL_DELAY or NEWSLETTER_BATCH_SIZE "
        "(its rate limits); the mailing's subject, text and HTML as templates "
        "newsletter/message/message*.{txt,html}; prepare = Newsletter, "
        "Subscriptions (bulk_create), Message, Submission.from_message() "
        "marked prepared; send = call_command('submit_newsletter') in a fresh "
        "process: one message at a time, a new SMTP connection for each (it "
        "has no setting for more)"
    )


def report(rows: list, engine: str, problems: list) -> None:
    """The table, then delivery and the ratio per app."""
    ours = rows[0]

    def rate(row):
        return RECIPIENTS / row["seconds"]

    def end_to_end(row):
        return RECIPIENTS / (row["seconds"] + row["queue_seconds"])

    header = (
        f"{'app':<22} {'version':<8} {'database':<10} {'prepare s':>9} "
        f"{'send s':>7} {'send msg/s':>10} {'total msg/s':>11} "
        f"{'CPU ms/msg':>10} {'msg bytes':>9} {'ours/theirs':>11}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = "" if row is ours else f"{rate(ours) / rate(row):10.1f}×"
        print(
            f"{row['app']:<22} {row['version']:<8} {engine:<10} "
            f"{row['queue_seconds']:9.2f} {row['seconds']:7.2f} {rate(row):10,.0f} "
            f"{end_to_end(row):11,.0f} "
            f"{row['cpu_seconds'] * 1000 / RECIPIENTS:10.2f} "
            f"{row['bytes']:9,} {ratio:>11}"
        )
    print(
        "send = the send step alone; total = prepare + send, both counted per "
        f"{RECIPIENTS:,} messages; CPU = the sending process and its children"
    )
    print()
    for row in rows:
        label = f"delivered, {row['app']}"
        print(f"{label:<40} {row['delivery']}  {verdict(row['ok'])}")
        if not row["ok"]:
            problems.append(f"{row['app']} delivery")
    for row in rows[1:]:
        ratio = rate(ours) / rate(row)
        total = end_to_end(ours) / end_to_end(row)
        ok = ratio >= TARGET_RATIO
        label = f"ours vs {row['app']}"
        print(
            f"{label:<40} {ratio:5.1f}× the send rate (target ≥ {TARGET_RATIO:g}×); "
            f"{total:.1f}× prepare + send  {verdict(ok)}"
        )
        if not ok:
            problems.append(label)


def remove_leftovers(settings):
    """Our SQLite file, and the journal directory once empty."""
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


if __name__ == "__main__":
    main()
