"""Our service next to the Django mailing apps people use, each as a newcomer runs it.

The same personalised mailing as bench_dispatch.py (the recipient's name in
the subject and in both bodies, text and HTML, a signed unsubscribe link)
goes out in two phases, each into a fresh SMTP sink per run (Postfix's
`smtp-sink` when installed, otherwise bench/sink.py's asyncio sink; it
counts what arrives and how often each recipient got it), with no rate
limit:

- zero latency: 5,000 recipients, the sink answers at once;
- 20 ms: 2,000 recipients, the sink waits 20 ms before answering each
  message's DATA (always bench/sink.py: smtp-sink waits whole seconds
  only). A server 20 ms away runs on other cores than the sender's; this
  one shares them, so it is a lean asyncio protocol (about 0.25 ms of CPU a
  message, where aiosmtpd took 1 ms and so held back most the senders that
  need least).

Rows, each with the app's defaults unless its label says otherwise:

- ours (command): `python manage.py send_scheduled_emails` in a fresh
  process whose environment holds only what a user puts in `.env`:
  DATABASE_URL (the bench database), EMAIL_URL=smtp://127.0.0.1:<sink>,
  DEBUG=False with a SECRET_KEY and ALLOWED_HOSTS (production, as
  example.env has it), and ENV_FILE naming a file that does not exist, so a
  developer's `.env` stays out. No SMTP_CONCURRENCY, DISPATCH_PROCESSES or
  other tuning: the project's defaults. The mailing is made due before the
  command starts; the time runs from the start of the process to its exit.
- ours (cluster): `python manage.py qcluster` with the same environment
  (default Q_WORKERS), warmed up by delivering the warm-up mailing; then
  the measured mailing is made due, `core.tasks.tick` is queued
  (`async_task` in a short `manage.py shell -c`), and the time runs from
  the queueing until every attempt of the run is final (sent, failed,
  skipped or unknown; the database is polled every 0.2 s). The schedule's
  own minute tick is moved a year ahead first, so the queued ticks are the
  only ones. The cluster gets SIGTERM afterwards (SIGKILL after 30 s).
- ours (command, DKIM): the command again, its mailing's message from the
  owner's own verified domain (news@shop-<tag>.example), so every message
  is DKIM-signed with the domain's key; the environment adds the
  ENCRYPTION_KEYS that key is stored under. The sample it kept must carry
  the signature.
- django-post-office: `mail.send_many()` with a database template and each
  recipient's context queues the batch (the "prepare" column: it renders as
  it queues, its default), then `python manage.py send_queued_mail` sends
  it: with its defaults (one process, THREADS_PER_PROCESS 5, BATCH_SIZE
  100), with `--processes 2`, and tuned (`--processes 2` and BATCH_SIZE
  5000, the fastest batch size found here: every batch forks a new pool of
  processes and opens new connections). Its best is the fastest of the three.
- django-newsletter: subscribers, a message and a prepared submission, then
  `python manage.py submit_newsletter`: one message at a time, a new SMTP
  connection each. Where that would take over 3 minutes it sends a sample
  and the rate is extrapolated (the row says so).

Every row first sends a warm-up mailing to 200 other recipients, then the
measured one, each step in a fresh process (the cluster: one process for
both). A command's time includes starting Python and Django; the "idle s"
column is the same command run once with nothing to send. CPU is that of
the command's process tree (wait4, or /proc for the cluster's); memory, read
from /proc every 0.2 s, is the largest peak RSS of any one of its processes
and the most they held together (PSS, so pages forked processes share count
once). The message size is that of the message to the warm-up's first
recipient as the sink received it; the other apps' List-Id,
List-Unsubscribe link and sender are taken from our first such message.

Targets (defined for PostgreSQL; on SQLite they are shown, not enforced):
at zero latency ours sends ≥ 2× as many messages per second as
post-office's best; at 20 ms ≥ 3× post-office with `--processes 2`. Both
unsigned ours rows are held to them; the signed row, at zero latency, to
≥ 80 % of the unsigned command's rate and to the 2× as well. Queries per
message and memory against the list's length are bench_dispatch.py's.

Neither app becomes a dependency of the project: they live in their own
virtualenv, var/bench/venv-compare (created on the first run, reused after),
and run in a throw-away Django project generated into a temporary directory
from bench/compare/ (on SQLite a file there; with DATABASE_URL a PostgreSQL
database per app next to ours, created and dropped). A run takes five to
six minutes on two cores.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench compare

BENCH_COMPARE_N and BENCH_COMPARE_SLOW_N change the two phases' recipients,
BENCH_COMPARE_WARMUP the warm-up's, BENCH_COMPARE_PHASES=zero or =20ms runs
one phase, BENCH_COMPARE_TUNED=0 leaves out post-office's tuned row, and
BENCH_SINK=aiosmtpd uses an aiosmtpd server as every sink, smtp-sink's
phase included.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.utils import formataddr
from pathlib import Path
from urllib.parse import quote

from cryptography.fernet import Fernet

from bench.bench_dispatch import BODY, HTML_BODY, SUBJECT, recipient, seed
from bench.processes import (
    MemoryWatch,
    StepFailed,
    log_tail,
    run_measured,
    session_cpu_seconds,
    stop_session,
)
from bench.sink import SinkProcess, smtp_sink_path
from bench.support import BASE_DIR, setup_django, teardown_django, timed, verdict


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


WARMUP = _setting("BENCH_COMPARE_WARMUP", 200)
STEP_TIMEOUT = 600  # seconds any one step may take before it is killed
# The command again, its mailing from the owner's own verified domain: every
# message DKIM-signed. At zero latency it keeps this share of the unsigned
# command's rate, and the peers' target.
SIGNED_LABEL = "ours (command, DKIM)"
SIGNED_SHARE = 0.8
CLUSTER_STOP_GRACE = 30
POLL_SECONDS = 0.2
# Past this, django-newsletter sends a sample and its rate is extrapolated.
NEWSLETTER_MAX_SECONDS = 180
NEWSLETTER_SAMPLE_SECONDS = 60
FINAL_STATUSES = ("sent", "failed", "skipped", "unknown")

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

APPS = {"post_office": "django-post-office", "newsletter": "django-newsletter"}


@dataclass(frozen=True)
class Phase:
    key: str  # one letter of every tag the phase sends to
    name: str
    count: int
    delay_ms: int
    baseline: str  # the post-office row the target compares with; "" = best
    target: float


PHASES = [
    Phase("z", "zero latency", _setting("BENCH_COMPARE_N", 5_000), 0, "", 2.0),
    Phase("s", "20 ms", _setting("BENCH_COMPARE_SLOW_N", 2_000), 20, "p", 3.0),
]


@dataclass(frozen=True)
class TheirRow:
    key: str  # one letter of the row's tags
    app: str
    label: str
    command: tuple
    post_office: dict = field(default_factory=dict)  # POST_OFFICE changes


THEIR_ROWS = [
    TheirRow("d", "post_office", "post-office defaults", ("send_queued_mail",)),
    TheirRow(
        "p", "post_office", "post-office -p 2", ("send_queued_mail", "--processes", "2")
    ),
    TheirRow(
        "t",
        "post_office",
        "post-office tuned",
        ("send_queued_mail", "--processes", "2"),
        {"BATCH_SIZE": 5000},
    ),
    TheirRow("n", "newsletter", "newsletter", ("submit_newsletter",)),
]

# Each app's sending command, run once with nothing to send.
IDLE_COMMANDS = {
    "post_office": ("send_queued_mail",),
    "newsletter": ("submit_newsletter",),
}

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


def tag_of(phase: Phase, row: str, kind: str) -> str:
    """Three letters: phase, row, w(arm-up) or m(easured); all the same length,
    so every mailing's title, addresses and so its messages are as long."""
    return f"{phase.key}{row}{kind}"


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


class Theirs:
    """The throw-away project the other apps run in."""

    def __init__(self, project: Path, databases: dict):
        self.project = project
        self.databases = databases
        self.ours = None  # what our messages carry; see take_ours()

    def env(self, app: str, *, port: int = 25, post_office: dict | None = None):
        env = {**os.environ, "BENCH_APP": app, "PYTHONDONTWRITEBYTECODE": "1"}
        for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "ENV_FILE"):
            env.pop(name, None)
        env["BENCH_SMTP_PORT"] = str(port)
        env["BENCH_POST_OFFICE"] = json.dumps(post_office or {})
        return env

    def step(self, app: str, phase: str, **arguments) -> dict:
        """One runner.py phase in the compare venv; the JSON it printed last."""
        log = self.project / f"{app}-{phase}.log"
        run_measured(
            [str(VENV_PYTHON), "runner.py", phase, json.dumps(arguments)],
            cwd=self.project,
            env=self.env(app),
            log=log,
            timeout=STEP_TIMEOUT,
        )
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
        log.unlink()
        return json.loads(lines[-1])

    def command(self, app, argv, *, port, post_office=None, log_name) -> dict:
        """`python manage.py <argv>` in the compare venv, measured."""
        return run_measured(
            [str(VENV_PYTHON), "manage.py", *argv],
            cwd=self.project,
            env=self.env(app, port=port, post_office=post_office),
            log=self.project / f"{log_name}.log",
            timeout=STEP_TIMEOUT,
        )

    def take_ours(self, sample: bytes) -> None:
        """Sender, site, List-Id and unsubscribe link, from one of our messages."""
        message = message_from_bytes(sample, policy=policy.default)
        links = re.findall(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
        link = links[0] if links else "http://127.0.0.1:8000/unsubscribe/x/"
        prefix, token, suffix = re.match(r"(.*/)([^/]+)(/?)$", link).groups()
        self.ours = {
            "from_email": str(message["From"]),
            "list_id": str(message["List-Id"]),
            "title": message_title(str(message["List-Id"])),
            "link": (prefix, suffix),
            "site_domain": re.match(r"https?://([^/]+)", link).group(1),
        }

    def write(self) -> None:
        """Settings, urls, manage.py, runner, templates, config."""
        for name in ("settings.py", "urls.py", "runner.py", "manage.py"):
            shutil.copy(TEMPLATE_DIR / name, self.project / name)
        config = {
            "databases": self.databases,
            "from_email": self.ours["from_email"],
            "site_domain": self.ours["site_domain"],
            "content": {"subject": SUBJECT, "body": BODY, "html_body": HTML_BODY},
        }
        (self.project / "config.json").write_text(
            json.dumps(config, ensure_ascii=False)
        )
        templates = self.project / "templates" / "newsletter" / "message"
        templates.mkdir(parents=True, exist_ok=True)
        for name, source in (
            ("message_subject.txt", SUBJECT),
            ("message.txt", BODY),
            ("message.html", HTML_BODY),
        ):
            for ours, theirs in NEWSLETTER_NAMES.items():
                source = source.replace(ours, theirs)
            (templates / name).write_text(source)

    def batch(self, *, tag: str, count: int) -> None:
        """recipients-<tag>.json: what ours would send, for the app to queue.

        Each recipient gets a link as long as ours (a signed token of its
        number, where ours signs the recipient's id) and the List-Id ours
        gives a mailing of the same title length.
        """
        from django.core import signing

        title = f"Новости {tag}"
        prefix, suffix = self.ours["link"]
        recipients = []
        for n in range(count):
            email, name = recipient(n, tag)
            token = signing.dumps(n + 1, salt="bench-compare", compress=True)
            recipients.append(
                [email, name, formataddr((name, email)), f"{prefix}{token}{suffix}"]
            )
        batch = {
            "title": title,
            "list_id": self.ours["list_id"].replace(self.ours["title"], title),
            "reply_to": f"owner.{tag}@bench.example",
            "recipients": recipients,
        }
        (self.project / f"recipients-{tag}.json").write_text(
            json.dumps(batch, ensure_ascii=False)
        )


def message_title(list_id: str) -> str:
    """The quoted title in a List-Id such as `"Новости zcw" <…>`."""
    found = re.match(r'\s*"([^"]*)"', list_id)
    return found.group(1) if found else list_id


# --- ours ---------------------------------------------------------------------


class Ours:
    """Our commands, run as a user runs them, on the bench database."""

    def __init__(self, project: Path):
        from django.conf import settings

        self.project = project
        self.database_url = database_url(settings.DATABASES["default"])
        self.secret_key = secrets.token_urlsafe(50)
        # The signed row's: a user who sends from their own domain sets it.
        self.encryption_key = Fernet.generate_key().decode()
        self.mailings = {}  # tag -> (mailing id, seeding seconds)

    def env(self, *, port: int, signed: bool = False) -> dict:
        """What a user sets in `.env`, and nothing else of ours."""
        env = {
            name: os.environ[name]
            for name in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
            if name in os.environ
        }
        env.update(
            ENV_FILE=str(self.project / "no-such.env"),
            DATABASE_URL=self.database_url,
            EMAIL_URL=f"smtp://127.0.0.1:{port}",
            DEBUG="False",
            SECRET_KEY=self.secret_key,
            ALLOWED_HOSTS="localhost",
        )
        if signed:
            env["ENCRYPTION_KEYS"] = self.encryption_key
        return env

    def manage(self, *argv) -> list[str]:
        return [sys.executable, "manage.py", *argv]

    def seed(self, tag: str, count: int, *, signed: bool = False) -> None:
        with timed() as clock:
            mailing_id = seed(tag=tag, count=count)
            if signed:
                self.sign_from_own_domain(mailing_id, tag)
        self.mailings[tag] = (mailing_id, clock["seconds"])

    def sign_from_own_domain(self, mailing_id: int, tag: str) -> None:
        """The mailing's message goes out from its owner's verified domain,
        DKIM-signed with the domain's key (stored under `encryption_key`)."""
        from django.conf import settings
        from django.utils import timezone

        from core.models import Mailing, Message, SenderDomain

        settings.ENCRYPTION_KEYS = [self.encryption_key]
        mailing = Mailing.objects.get(pk=mailing_id)
        domain = SenderDomain.objects.create(
            owner_id=mailing.owner_id, domain=f"shop-{tag}.example"
        )
        SenderDomain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
        Message.objects.filter(pk=mailing.message_id).update(
            from_name="Цветочная лавка", from_email=f"news@{domain.domain}"
        )

    def make_due(self, tag: str) -> int:
        from django.utils import timezone

        from core.models import Mailing

        mailing_id = self.mailings[tag][0]
        due = timezone.now() - timedelta(seconds=1)
        Mailing.objects.filter(pk=mailing_id).update(start_at=due, next_run_at=due)
        return mailing_id

    def statuses(self, tag: str) -> dict:
        from django.db.models import Count

        from core.models import Attempt

        return dict(
            Attempt.objects.filter(run__mailing_id=self.mailings[tag][0])
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )

    def run_status(self, tag: str) -> str:
        from core.models import MailingRun

        statuses = MailingRun.objects.filter(
            mailing_id=self.mailings[tag][0]
        ).values_list("status", flat=True)
        return ", ".join(sorted(statuses)) or "no run"

    def idle(self) -> float:
        """`send_scheduled_emails` with nothing due: starting up, and a look."""
        figures = run_measured(
            self.manage("send_scheduled_emails"),
            cwd=BASE_DIR,
            env=self.env(port=25),
            log=self.project / "ours-idle.log",
            timeout=STEP_TIMEOUT,
        )
        return figures["seconds"]

    def command(self, phase: Phase, *, row: str = "c", signed: bool = False) -> dict:
        """Warm-up, then the measured mailing, each by a fresh command.

        Where both go to the same kind of sink they go to one server, as a
        user's mailings go to one relay (what the service learned of it on
        the warm-up, its connection count, then holds for the mailing).
        """
        result = {}
        warm, main = tag_of(phase, row, "w"), tag_of(phase, row, "m")
        sample = self.project / f"sample-{warm}.eml"
        one_server = not postfix_preferred() or phase.delay_ms % 1000 != 0
        figures = {}
        if one_server:
            with new_sink(phase.delay_ms, sample=sample) as sink:
                for kind, tag in (("w", warm), ("m", main)):
                    figures[kind] = self._send(tag, sink.port, signed=signed)
                received = sink.stop()
            # The sink holds both; the one settled is named last.
            both = {warm: WARMUP, main: phase.count}
            for kind, tag in (("w", warm), ("m", main)):
                expected = {
                    **{k: v for k, v in both.items() if k != tag},
                    tag: both[tag],
                }
                result[kind] = self.settle(figures[kind], received, expected, tag)
        else:
            for kind, tag, count in (("w", warm, WARMUP), ("m", main, phase.count)):
                with new_sink(
                    phase.delay_ms, sample=sample if kind == "w" else None
                ) as sink:
                    figures = self._send(tag, sink.port, signed=signed)
                    received = sink.stop()
                result[kind] = self.settle(figures, received, {tag: count}, tag)
        result["sample"] = sample.read_bytes() if sample.exists() else b""
        return result

    def _send(self, tag: str, port: int, *, signed: bool = False) -> dict:
        self.make_due(tag)
        return run_measured(
            self.manage("send_scheduled_emails"),
            cwd=BASE_DIR,
            env=self.env(port=port, signed=signed),
            log=self.project / f"ours-{tag}.log",
            timeout=STEP_TIMEOUT,
        )

    def settle(self, figures, received, expected: dict, tag: str) -> dict:
        """The figures with what the database and the sink say of `tag`."""
        statuses = self.statuses(tag)
        count = expected[tag]
        ok, text = check_delivery(received, expected, sent=statuses.get("sent", 0))
        ok &= statuses == {"sent": count}
        text += "; attempts " + ", ".join(
            f"{status} {n:,}" for status, n in sorted(statuses.items())
        )
        run = self.run_status(tag)
        if run != "finished":
            text += f"; run {run}"
        return {**figures, "count": count, "ok": ok, "delivery": text}

    def queue_tick(self, env: dict) -> float:
        """Queue `core.tasks.tick` for the cluster; when it was queued (epoch)."""
        completed = subprocess.run(
            self.manage(
                "shell",
                "-c",
                "import time; from django_q.tasks import async_task; "
                "async_task('core.tasks.tick'); print('queued at', time.time())",
            ),
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        found = re.findall(r"queued at ([0-9.]+)", completed.stdout)
        if completed.returncode or not found:
            lines = [line for line in completed.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else "no output"
            raise StepFailed(f"queueing the tick: {last}")
        return float(found[-1])

    def wait_final(self, tag, count, deadline, cluster, log, memory=None) -> float:
        """Poll until all `count` attempts of the mailing's run are final."""
        while True:
            if memory is not None:
                memory.look()
            if cluster.poll() is not None:
                raise StepFailed(f"qcluster exited: {log_tail(log)}")
            statuses = self.statuses(tag)
            final = sum(statuses.get(status, 0) for status in FINAL_STATUSES)
            if final >= count and final == sum(statuses.values()):
                return time.time()
            if time.monotonic() > deadline:
                raise StepFailed(f"cluster: {tag} not final in time: {statuses}")
            time.sleep(POLL_SECONDS)

    def cluster(self, phase: Phase) -> dict:
        """qcluster: warmed up by one mailing, then timed on the measured one."""
        warm, main = tag_of(phase, "q", "w"), tag_of(phase, "q", "m")
        sample = self.project / f"sample-{warm}.eml"
        # One sink for both mailings, as one server would be: the cluster's
        # connections may outlive a task.
        sink = new_sink(phase.delay_ms, sample=None if postfix_preferred() else sample)
        log = self.project / f"ours-cluster-{phase.key}.log"
        with sink:
            env = self.env(port=sink.port)
            with open(log, "ab") as output:
                cluster = subprocess.Popen(
                    self.manage("qcluster"),
                    cwd=BASE_DIR,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                # The broker keeps the task until the cluster is up to take it.
                self.make_due(warm)
                self.queue_tick(env)
                self.wait_final(
                    warm, WARMUP, time.monotonic() + STEP_TIMEOUT, cluster, log
                )

                self.make_due(main)
                cpu = session_cpu_seconds(cluster.pid)
                queued = self.queue_tick(env)
                memory = MemoryWatch(cluster.pid)
                ended = self.wait_final(
                    main,
                    phase.count,
                    time.monotonic() + STEP_TIMEOUT,
                    cluster,
                    log,
                    memory,
                )
                cpu = session_cpu_seconds(cluster.pid) - cpu
                memory.look()
            finally:
                clean = stop_session(cluster, grace=CLUSTER_STOP_GRACE)
            received = sink.stop()
        figures = {"seconds": ended - queued, "cpu_seconds": cpu, **memory.most}
        result = self.settle(figures, received, {warm: WARMUP, main: phase.count}, main)
        if not clean:
            result["delivery"] += f"; SIGTERM did not stop it in {CLUSTER_STOP_GRACE} s"
        result["sample"] = sample.read_bytes() if sample.exists() else b""
        return result


def database_url(db: dict) -> str:
    """DATABASE_URL for the bench database, as a user would write it."""
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or ""
    if db.get("PORT"):
        host += f":{db['PORT']}"
    return f"postgres://{auth + '@' if auth else ''}{host}/{db['NAME']}"


def hold_schedule() -> None:
    """Move the schedule's minute tick out of the way of the queued ones."""
    from django.utils import timezone
    from django_q.models import Schedule

    Schedule.objects.filter(func="core.tasks.tick").update(
        next_run=timezone.now() + timedelta(days=365)
    )


def our_version() -> str:
    with open(BASE_DIR / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    return f"{project['name']} {project['version']}"


# --- sinks and checks ---------------------------------------------------------


def postfix_preferred() -> bool:
    return bool(smtp_sink_path()) and os.environ.get("BENCH_SINK", "") != "aiosmtpd"


def new_sink(delay_ms: int = 0, sample: Path | None = None) -> SinkProcess:
    return SinkProcess(
        delay_ms=delay_ms, prefer_postfix=postfix_preferred(), sample=sample
    )


def check_delivery(received: dict, expected: dict, *, sent=None) -> tuple[bool, str]:
    """Each tag's recipients got one copy each at the sink, and nothing else."""
    at_sink = received.get("messages", 0)
    total = sum(expected.values())
    ok = at_sink == total
    text = f"sink got {at_sink:,}"
    tags = received.get("tags")
    if tags is not None:
        parts = []
        for tag, count in expected.items():
            got = tags.get(tag, {})
            ok &= got.get("messages") == count == got.get("recipients")
            ok &= got.get("max_copies") == 1
            parts.append(
                f"{tag}: {got.get('messages', 0):,} for "
                f"{got.get('recipients', 0):,} recipients"
            )
        text += " (" + "; ".join(parts) + ")"
    if sent is not None:
        last = list(expected.values())[-1]
        ok &= sent == last
        text = f"{sent:,} recorded sent, " + text
    return ok, text


# --- the other apps -------------------------------------------------------------


def their_row(theirs: Theirs, row: TheirRow, phase: Phase, sample_size=None) -> dict:
    """Queue and send the warm-up, then the measured batch; its figures."""
    result = {}
    for kind, count in (("w", WARMUP), ("m", sample_size or phase.count)):
        tag = tag_of(phase, row.key, kind)
        theirs.batch(tag=tag, count=count)
        queued = theirs.step(row.app, "queue", tag=tag)
        if queued["queued"] != count:
            raise StepFailed(f"{row.label}: {queued['queued']} queued, not {count}")
        sample = theirs.project / f"sample-{tag}.eml" if kind == "w" else None
        with new_sink(phase.delay_ms, sample=sample) as sink:
            figures = theirs.command(
                row.app,
                row.command,
                port=sink.port,
                post_office=row.post_office,
                log_name=f"{row.app}-{tag}",
            )
            received = sink.stop()
        outcome = theirs.step(row.app, "outcome", tag=tag)
        ok, text = check_delivery(received, {tag: count}, sent=outcome["sent"])
        if outcome["sent"] is None:
            ok &= outcome["statuses"] == {"submission sent": True}
            text += "; submission marked sent" if ok else f"; {outcome['statuses']}"
        elif outcome["statuses"] != {"sent": count}:
            text += f"; e-mails {outcome['statuses']}"
            ok = False
        result[kind] = {
            **figures,
            "count": count,
            "prepare_seconds": queued["seconds"],
            "ok": ok,
            "delivery": text,
        }
        if sample is not None:
            result["sample"] = sample.read_bytes() if sample.exists() else b""
    return result


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


def postgres(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement)


# --- the run --------------------------------------------------------------------


def chosen_phases() -> list[Phase]:
    wanted = os.environ.get("BENCH_COMPARE_PHASES", "")
    if not wanted:
        return PHASES
    names = {name.strip().replace(" ", "") for name in wanted.split(",")}
    return [
        phase
        for phase in PHASES
        if phase.name.replace(" ", "") in names
        or phase.name.split()[0] in names
        or phase.key in names
    ]


def chosen_their_rows() -> list[TheirRow]:
    if os.environ.get("BENCH_COMPARE_TUNED", "1") == "0":
        return [row for row in THEIR_ROWS if row.key != "t"]
    return THEIR_ROWS


def main():
    engine = setup_django()
    from django import get_version
    from django.conf import settings
    from django.db import connection

    project = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    databases = their_databases(engine, project)
    theirs = Theirs(project, databases)
    ours = Ours(project)
    created = []  # PostgreSQL databases to drop
    problems, missed = [], []
    phases = chosen_phases()
    try:
        with timed() as venv_clock:
            venv_done, newsletter_error = ensure_venv()

        # Ours: recipients and mailings are rows before a tick sends them.
        for phase in phases:
            for row in "cqd":
                for kind, count in (("w", WARMUP), ("m", phase.count)):
                    ours.seed(tag_of(phase, row, kind), count, signed=row == "d")
        hold_schedule()
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
            )
        their_note = (
            "the other apps: a SQLite file each, with the project's options"
            if engine == "sqlite3"
            else "the other apps: "
            + ", ".join(db["NAME"] for db in databases.values())
            + ", created and dropped"
        )
        print(
            f"database: {engine}, ours {settings.DATABASES['default']['NAME']} "
            f"({their_note}); load average {os.getloadavg()[0]:.2f} on "
            f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}, Django "
            f"{get_version()}; {venv_done} in {venv_clock['seconds']:.0f} s",
            flush=True,
        )
        if engine != "postgresql":
            print(
                "the targets are defined for PostgreSQL: on SQLite they are "
                "shown, not enforced",
                flush=True,
            )
        print(
            f"ours: {our_version()}; `python manage.py send_scheduled_emails` and "
            "`python manage.py qcluster` with only DATABASE_URL, "
            "EMAIL_URL=smtp://127.0.0.1:<sink>, DEBUG=False, SECRET_KEY, "
            "ALLOWED_HOSTS and ENV_FILE (no such file) in the environment: every "
            "dispatch setting at its default; the cluster's schedule held off, "
            "`core.tasks.tick` queued by `manage.py shell -c`",
            flush=True,
        )

        their_apps = [
            app for app in APPS if not (app == "newsletter" and newsletter_error)
        ]
        if newsletter_error:
            print(
                f"{APPS['newsletter']} is not measured: it does not install next "
                f"to Django 5.2: {newsletter_error}",
                flush=True,
            )
        versions, idle = {}, {}
        idle["ours"] = ours.idle()
        newsletter_limit = None
        for index, phase in enumerate(phases):
            rows = []
            sink = new_sink(phase.delay_ms)
            print(
                f"\n== {phase.name}: {phase.count:,} recipients; sink "
                f"{sink.label}"
                + (
                    f", {phase.delay_ms} ms before each DATA answer"
                    if phase.delay_ms
                    else ", answering at once"
                )
                + ("" if smtp_sink_path() else " (smtp-sink is not installed)")
                + f"; warm-ups of {WARMUP} to bench/sink.py, which keeps the first "
                f"recipient's message; load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            command = ours.command(phase)
            rows.append(our_row("ours (command)", command, ours, "c", phase, idle))
            if index == 0:
                theirs.take_ours(command["sample"])
                theirs.write()
                for app in their_apps:
                    versions[app] = theirs.step(app, "versions")
                    if engine != "sqlite3":
                        name = databases[app]["NAME"]
                        postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        postgres(f'CREATE DATABASE "{name}"')
                        created.append(name)
                    theirs.step(app, "migrate")
                    idle[app] = theirs.command(
                        app, IDLE_COMMANDS[app], port=25, log_name=f"{app}-idle"
                    )["seconds"]
            cluster = ours.cluster(phase)
            if not cluster["sample"]:
                cluster["sample"] = command["sample"]
            rows.append(our_row("ours (cluster)", cluster, ours, "q", phase, idle))
            signed = ours.command(phase, row="d", signed=True)
            rows.append(our_row(SIGNED_LABEL, signed, ours, "d", phase, idle))
            if b"\r\nDKIM-Signature: " not in b"\r\n" + signed["sample"]:
                problems.append(f"{phase.name}: the signed row's mail is not signed")
            for row in chosen_their_rows():
                if row.app not in their_apps:
                    continue
                sample_size = None
                if row.app == "newsletter" and newsletter_limit:
                    sample_size = newsletter_sample(newsletter_limit, phase)
                try:
                    result = their_row(theirs, row, phase, sample_size)
                except StepFailed as error:
                    if row.app != "newsletter":
                        raise
                    print(f"{row.label} was not measured: {error}", flush=True)
                    continue
                figures = {
                    **result["m"],
                    "label": row.label,
                    "version": versions[row.app]["app"],
                    "idle_seconds": idle[row.app],
                    "bytes": len(result["sample"]),
                    "note": "",
                }
                if sample_size:
                    # Starting up once, then the sample's time per message
                    # for every recipient.
                    measured = figures["seconds"]
                    per_message = (measured - idle[row.app]) / sample_size
                    figures["cpu_ms"] = figures["cpu_seconds"] * 1000 / sample_size
                    figures["count"] = phase.count
                    figures["seconds"] = idle[row.app] + per_message * phase.count
                    figures["note"] = (
                        f"a sample of {sample_size:,} in {measured:.1f} s; the "
                        f"time for {phase.count:,} is the idle run's plus "
                        f"{phase.count:,} times the sample's per message"
                    )
                if row.app == "newsletter" and index == 0:
                    newsletter_limit = figures
                if not result["w"]["ok"]:
                    problems.append(f"{row.label} warm-up: {result['w']['delivery']}")
                rows.append(figures)
            report(phase, rows, problems, missed, engine)
        print(their_config(versions))
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    except StepFailed as error:
        problems.append(str(error))
    finally:
        for name in created:
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        teardown_django()
        remove_leftovers(settings)
        shutil.rmtree(project, ignore_errors=True)
    if engine != "postgresql" and missed:
        print(f"targets missed on {engine} (not enforced): {', '.join(missed)}")
        missed = []
    if problems or missed:
        print("SOME TARGETS MISSED: " + "; ".join(problems + missed))
        sys.exit(1)
    print("ALL OK")


def our_row(label, result, ours, key, phase, idle) -> dict:
    warm = result["w"] if "w" in result else None
    row = {
        **result.get("m", result),
        "label": label,
        "version": our_version().split()[-1],
        "prepare_seconds": ours.mailings[tag_of(phase, key, "m")][1],
        "idle_seconds": idle["ours"] if key in ("c", "d") else None,
        "bytes": len(result["sample"]),
        "note": "",
    }
    if warm is not None and not warm["ok"]:
        row["warm_problem"] = warm["delivery"]
    return row


def newsletter_sample(zero: dict, phase: Phase) -> int | None:
    """How many django-newsletter sends at `phase`, if not all within bounds.

    Its time per message at zero latency plus the sink's delay, once per
    message (one connection each), predicts the phase's time.
    """
    per_message = (zero["seconds"] - zero["idle_seconds"]) / zero["count"]
    per_message += phase.delay_ms / 1000
    if zero["idle_seconds"] + per_message * phase.count <= NEWSLETTER_MAX_SECONDS:
        return None
    return max(WARMUP, int(NEWSLETTER_SAMPLE_SECONDS / per_message))


def their_config(versions: dict) -> str:
    """What was run for the other apps, exactly."""
    lines = []
    if "post_office" in versions:
        v = versions["post_office"]
        lines.append(
            f"django-post-office {v['app']} on Django {v['django']} "
            "(var/bench/venv-compare): EMAIL_BACKEND post_office.EmailBackend, "
            "POST_OFFICE = {BACKENDS: {default: Django's SMTP backend}} and its "
            "defaults (THREADS_PER_PROCESS 5, BATCH_SIZE 100, LOG_LEVEL 2, "
            "MAX_RETRIES 0); tuned: --processes 2 and BATCH_SIZE 5000, the "
            "fastest batch found on this machine (every batch forks a new pool "
            "and opens new connections); prepare = mail.send_many() "
            "with an EmailTemplate and each recipient's context and headers "
            "(rendered as it queues); send = `python manage.py send_queued_mail "
            "[--processes 2]`: 5 threads, each its own SMTP connection, per process"
        )
    if "newsletter" in versions:
        v = versions["newsletter"]
        lines.append(
            f"django-newsletter {v['app']} on Django {v['django']}: Django's SMTP "
            "backend, no NEWSLETTER_EMAIL_DELAY or NEWSLETTER_BATCH_SIZE (its "
            "rate limits); the mailing's subject, text and HTML as templates "
            "newsletter/message/message*.{txt,html}; prepare = Newsletter, "
            "Subscriptions (bulk_create), Message, Submission.from_message() "
            "marked prepared; send = `python manage.py submit_newsletter`: one "
            "message at a time, a new SMTP connection for each"
        )
    return "\n".join(lines)


def report(phase: Phase, rows: list, problems: list, missed: list, engine) -> None:
    """The phase's table, its deliveries, and its targets."""

    def rate(row):
        return row["count"] / row["seconds"]

    def cpu_ms(row):
        return row.get("cpu_ms", row["cpu_seconds"] * 1000 / row["count"])

    header = (
        f"{'':<22} {'version':<7} {'prepare s':>9} {'idle s':>6} {'send s':>7} "
        f"{'msg/s':>7} {'CPU ms/msg':>10} {'msg bytes':>9} "
        f"{'MB peak/all':>11} {'procs':>5}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        idle = "" if row["idle_seconds"] is None else f"{row['idle_seconds']:.2f}"
        seconds = phase.count / rate(row)
        memory = f"{row['peak_mb']:.0f} / {row['pss_mb']:.0f}"
        print(
            f"{row['label'] + ('*' if row['note'] else ''):<22} {row['version']:<7} "
            f"{row['prepare_seconds']:9.2f} {idle:>6} {seconds:7.2f} "
            f"{rate(row):7,.0f} {cpu_ms(row):10.2f} "
            f"{row['bytes']:9,} {memory:>11} {row['processes']:5}"
        )
    for row in rows:
        if row["note"]:
            print(f"* {row['label']}: {row['note']}")
    print(
        "prepare = inserting the recipients and the mailing (post-office: "
        "queueing, rendered); idle = the same command with nothing to send; "
        "send = the command from start to exit (the cluster: from queueing the "
        "tick to the last attempt final); CPU over the same span, every process"
    )
    print()
    for row in rows:
        label = f"delivered, {row['label']}"
        print(f"{label:<32} {row['delivery']}  {verdict(row['ok'])}")
        if not row["ok"]:
            problems.append(f"{phase.name}: {row['label']} delivery")
        if row.get("warm_problem"):
            problems.append(f"{phase.name}: {row['label']} warm-up")
            print(f"{'':<32} warm-up: {row['warm_problem']}")
    post_office = [row for row in rows if row["label"].startswith("post-office")]
    if not post_office:
        return
    if phase.baseline:
        wanted = next(r.label for r in THEIR_ROWS if r.key == phase.baseline)
        base = next(row for row in post_office if row["label"] == wanted)
        name = base["label"]
    else:
        base = max(post_office, key=rate)
        name = f"post-office best ({base['label']})"
    for ours in rows[:2]:
        ratio = rate(ours) / rate(base)
        ok = ratio >= phase.target
        label = f"{ours['label']} vs {name}"
        print(
            f"target, {phase.name}: {label}: {ratio:.2f}× ({rate(ours):,.0f} vs "
            f"{rate(base):,.0f} msg/s; target ≥ {phase.target:g}×)  "
            + (verdict(ok) if engine == "postgresql" or ok else "MISSED (SQLite)")
        )
        if not ok:
            missed.append(f"{phase.name}: {label}")
    signed = next((row for row in rows if row["label"] == SIGNED_LABEL), None)
    if signed is not None:
        share = rate(signed) / rate(rows[0])
        versus = rate(signed) / rate(base)
        checks = [
            (
                f"signed vs unsigned (command): {share:.0%} ({rate(signed):,.0f} vs "
                f"{rate(rows[0]):,.0f} msg/s; target ≥ {SIGNED_SHARE:.0%})",
                share >= SIGNED_SHARE,
            ),
            (
                f"signed vs {name}: {versus:.2f}× (target ≥ {phase.target:g}×)",
                versus >= phase.target,
            ),
        ]
        for text, ok in checks:
            # The targets are the zero-latency phase's (a slow server hides
            # the signing's cost); the 20 ms figures are shown.
            enforced = not phase.delay_ms
            shown = verdict(ok) if enforced else "(shown)"
            if enforced and engine != "postgresql" and not ok:
                shown = "MISSED (SQLite)"
            print(f"target, {phase.name}: {text}  {shown}")
            if enforced and not ok:
                missed.append(f"{phase.name}: {text.split(':')[0]}")
    for row in rows:
        if row["label"] == "newsletter":
            print(
                f"for reference, {phase.name}: ours (command) vs newsletter: "
                f"{rate(rows[0]) / rate(row):.2f}×"
            )


def remove_leftovers(settings):
    """Our SQLite file."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{db['NAME']}{suffix}")
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    main()
