"""Many workers, a killed worker: each address gets at most one copy.

These start real processes (send_scheduled_emails, qcluster) against the
test database, so they need PostgreSQL's row locks.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.models import Attempt, Client, Mailing, MailingRun, Message
from core.services.dispatch.recovery import NOT_BUILT

from .factories import UserFactory
from .smtp import SmtpServer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

BASE_DIR = Path(__file__).resolve().parents[2]
FINAL = {"sent", "failed", "skipped", "unknown"}


def database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


@pytest.fixture
def sink():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def worker_env(sink, tmp_path):
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ENV_FILE": str(tmp_path / "none.env"),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "True",  # development mode, as `make run`
        "DATABASE_URL": database_url(),
        "EMAIL_URL": f"smtp://127.0.0.1:{sink.port}",
        "CACHE_URL": "locmemcache://",
        "DISPATCH_JOURNAL_DIR": str(tmp_path / "journal"),
        "SMTP_CONCURRENCY": "4",
        "DISPATCH_BATCH_SIZE": "50",
        # One delivering process per command unless a test asks for helpers.
        "DISPATCH_PROCESSES": "1",
        "SMTP_RETRY_BACKOFF": "0",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
        # The commands speak the service's language; asserted in English.
        "LANGUAGE_CODE": "en",
    }


def due_mailing(recipients: int) -> Mailing:
    owner = UserFactory(verified=True, groups=["clients"])
    Client.objects.bulk_create(
        Client(owner=owner, email=f"person{i:05d}@example.org")
        for i in range(recipients)
    )
    message = Message.objects.create(
        owner=owner, subject="Привет", body="Здравствуйте, {{ client.email }}"
    )
    mailing = Mailing.objects.create(
        owner=owner,
        title="Большая рассылка",
        message=message,
        start_at=timezone.now(),
        next_run_at=timezone.now(),
    )
    mailing.clients.set(Client.objects.filter(owner=owner))
    return mailing


def start(args, env, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115  closed by the OS at exit
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(predicate, timeout=180, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def all_final():
    connection.close()  # see the other processes' commits
    return (
        Attempt.objects.exists()
        and not Attempt.objects.exclude(status__in=FINAL).exists()
    )


def stop(process):
    if process.poll() is None:
        # The main process only: qcluster stops its own children, and hangs
        # when they get the signal too.
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_two_commands_and_a_cluster_deliver_each_address_exactly_once(
    sink, worker_env, tmp_path
):
    mailing = due_mailing(2000)
    from django_q.tasks import async_task

    async_task("core.tasks.tick")  # the cluster picks it up as it starts
    # Each may fork a helper too: up to six processes claim at once.
    env = {**worker_env, "DISPATCH_PROCESSES": "2"}
    processes = [
        start(["send_scheduled_emails"], env, tmp_path, "command-1"),
        start(["send_scheduled_emails"], env, tmp_path, "command-2"),
        start(["qcluster"], env, tmp_path, "cluster"),
    ]
    try:
        assert wait_until(all_final), "attempts still open: " + ", ".join(
            (tmp_path / f"{n}.log").read_text()[-500:]
            for n in ("command-1", "command-2", "cluster")
        )
        assert wait_until(lambda: processes[0].poll() is not None, timeout=60)
        assert wait_until(lambda: processes[1].poll() is not None, timeout=60)
    finally:
        for process in processes:
            stop(process)

    counts = sink.recorder.count_by_address()
    assert len(counts) == 2000
    assert max(counts.values()) == 1
    connection.close()
    assert MailingRun.objects.filter(mailing=mailing).count() == 1
    run = MailingRun.objects.get(mailing=mailing)
    assert (run.sent_count, run.status) == (2000, "finished")
    assert Attempt.objects.filter(status="sent").count() == 2000


def test_one_tick_delivers_in_several_processes_each_address_once(
    sink, worker_env, tmp_path
):
    mailing = due_mailing(1500)
    env = {**worker_env, "DISPATCH_PROCESSES": "3"}
    command = start(["send_scheduled_emails"], env, tmp_path, "command")
    try:
        assert command.wait(timeout=180) == 0, (tmp_path / "command.log").read_text()
    finally:
        stop(command)

    output = (tmp_path / "command.log").read_text()
    assert "sent 1500," in output  # the helpers' counts reach the summary
    counts = sink.recorder.count_by_address()
    assert len(counts) == 1500
    assert max(counts.values()) == 1
    # More connections than one process opens: the helpers sent too.
    assert len(sink.recorder.peers) > int(env["SMTP_CONCURRENCY"])
    connection.close()
    run = MailingRun.objects.get(mailing=mailing)
    assert (run.sent_count, run.status) == (1500, "finished")


def test_killed_worker_sends_no_address_twice(sink, worker_env, tmp_path):
    due_mailing(2000)
    sink.recorder.delay = 0.005
    # The kill takes the command and its helper (one process group).
    processes = 2
    env = {
        **worker_env,
        "DISPATCH_LEASE_SECONDS": "4",
        "DISPATCH_PROCESSES": str(processes),
    }
    first = start(["send_scheduled_emails"], env, tmp_path, "first")
    assert wait_until(lambda: len(sink.messages) >= 400, timeout=120)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    delivered_before = len(sink.messages)
    assert delivered_before < 2000

    time.sleep(4.5)  # the dead worker's lease runs out
    second = start(["send_scheduled_emails"], env, tmp_path, "second")
    try:
        assert wait_until(all_final), (tmp_path / "second.log").read_text()[-2000:]
        second.wait(timeout=60)
    finally:
        stop(second)

    counts = sink.recorder.count_by_address()
    assert max(counts.values()) == 1, "an address received two copies"
    connection.close()
    unknown = Attempt.objects.filter(status="unknown").count()
    sent = Attempt.objects.filter(status="sent").count()
    # A message the kill caught while it was being built failed, by design:
    # it is not handed to the next worker (it might be what killed this one).
    not_built = Attempt.objects.filter(status="failed", server_response=NOT_BUILT)
    assert unknown + not_built.count() <= int(env["SMTP_CONCURRENCY"]) * processes
    assert sent + unknown + not_built.count() == 2000
    # Every message the server accepted is either recorded as sent or, for
    # the ones in flight at the kill, as unknown; none is recorded twice.
    assert sent <= len(counts) <= sent + unknown


def test_two_clusters_on_redis_deliver_each_address_exactly_once(
    sink, worker_env, tmp_path
):
    """Workers on two machines share PostgreSQL and Redis (the broker)."""
    redis_url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    redis = pytest.importorskip("redis").Redis.from_url(redis_url)
    try:
        redis.ping()
    except Exception as error:  # no server: say why instead of failing
        pytest.skip(f"Redis at {redis_url} is not reachable: {error}")
    redis.flushdb()
    from django_q.models import Schedule, Task

    # Only the two ticks queued below run: no scheduled tick joins in.
    Schedule.objects.all().delete()
    due_mailing(5000)
    env = {**worker_env, "REDIS_URL": redis_url}
    env.pop("CACHE_URL")
    clusters = [
        start(
            ["qcluster"],
            {**env, "DISPATCH_JOURNAL_DIR": str(tmp_path / f"j{i}")},
            tmp_path,
            f"cluster-{i}",
        )
        for i in (1, 2)
    ]
    try:
        # Two ticks on the shared broker; either cluster may take either.
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from django_q.tasks import async_task\n"
                "async_task('core.tasks.tick'); async_task('core.tasks.tick')",
            ],
            cwd=BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
        )
        # 5,000 messages through two clusters take about 100 s on an idle
        # 2-core machine; beside the browser journey under -n 2, more than
        # twice that.
        assert wait_until(all_final, timeout=480), "\n".join(
            (tmp_path / f"cluster-{i}.log").read_text()[-1000:] for i in (1, 2)
        )
        # Each tick says how many deliveries it handed out; all of them end.
        assert wait_until(lambda: every_task_done(Task), timeout=60)
    finally:
        for cluster in clusters:
            stop(cluster)
        redis.flushdb()

    counts = sink.recorder.count_by_address()
    assert len(counts) == 5000
    assert max(counts.values()) == 1
    connection.close()
    assert Attempt.objects.filter(status="sent").count() == 5000
    # Each task reports what it sent; together they sent everything once.
    sent = [
        int(re.search(r"sent (\d+)", t.result).group(1)) for t in Task.objects.all()
    ]
    assert sum(sent) == 5000


def every_task_done(Task) -> bool:
    """Both ticks and every delivery they started have ended."""
    connection.close()
    ticks = Task.objects.filter(func="core.tasks.tick")
    if ticks.count() < 2:
        return False
    started = sum(
        int(re.search(r"deliveries started (\d+)", tick.result).group(1))
        for tick in ticks
    )
    return Task.objects.filter(func="core.tasks.deliver").count() == started


def test_helpers_are_forked_only_where_they_can_help(sink, settings, tmp_path):
    from core.services.dispatch import run_open_now
    from core.services.dispatch.workers import helpers_wanted

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.DISPATCH_BATCH_SIZE = 100
    settings.DISPATCH_PROCESSES = 4
    assert helpers_wanted() == 0  # nothing queued
    run = run_open_now(mailing_id=due_mailing(250).pk)
    assert helpers_wanted() == 2  # three batches: the tick and two helpers
    assert helpers_wanted(run_ids=[run.pk + 1]) == 0  # another run's queue
    settings.DISPATCH_PROCESSES = 2
    assert helpers_wanted() == 1
    settings.DISPATCH_PROCESSES = 1
    assert helpers_wanted() == 0
    settings.DISPATCH_PROCESSES = 4
    settings.SMTP_RATE_LIMIT = "10/s"  # not counted atomically but by Redis
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    assert helpers_wanted() == 0
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    assert helpers_wanted() == 0
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/15",
        }
    }
    assert helpers_wanted() == 2
    settings.SMTP_RATE_LIMIT = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert helpers_wanted() == 0  # the outbox lives in this process


def test_a_dispatcher_killed_and_restarted_at_once_leaves_nothing_sending(
    sink, worker_env, tmp_path
):
    """No lease to wait out: the dead processes' journal locks are free at once."""
    due_mailing(2000)
    sink.recorder.delay = 0.005
    env = {**worker_env, "DISPATCH_PROCESSES": "2"}
    env.pop("SMTP_CONCURRENCY")  # the adaptive default
    first = start(["send_scheduled_emails"], env, tmp_path, "first")
    assert wait_until(lambda: len(sink.messages) >= 400, timeout=120)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert len(sink.messages) < 2000

    second = start(["send_scheduled_emails"], env, tmp_path, "second")
    try:
        assert second.wait(timeout=180) == 0, (tmp_path / "second.log").read_text()
    finally:
        stop(second)

    connection.close()
    # The second command settled the first one's claims and sent the rest.
    assert not Attempt.objects.exclude(status__in=FINAL).exists()
    counts = sink.recorder.count_by_address()
    assert max(counts.values()) == 1, "an address received two copies"
    unknown = Attempt.objects.filter(status="unknown").count()
    sent = Attempt.objects.filter(status="sent").count()
    not_built = Attempt.objects.filter(status="failed", server_response=NOT_BUILT)
    assert sent + unknown + not_built.count() == 2000
    # One in flight per connection at most: two processes, 16 connections each.
    assert unknown <= 32
    assert sent <= len(counts) <= sent + unknown


def processes_holding(directory: Path, group: int) -> list[int]:
    """Processes of a process group with a file of `directory` open."""
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != group:
                continue
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except (OSError, ProcessLookupError):
            continue
        if any(target.startswith(str(directory)) for target in targets):
            holders.append(int(proc.name))
    return holders


def dead_claims(journals: Path) -> int:
    """Attempts still "sending" under a journal whose lock nobody holds."""
    from core.services.dispatch.journal import journal_holder_gone

    tokens = [path.stem for path in journals.glob("*.log")]
    dead = [token for token in tokens if journal_holder_gone(token)]
    return Attempt.objects.filter(status="sending", claim_token__in=dead).count()


def test_a_cluster_worker_killed_mid_batch_loses_nothing(sink, worker_env, tmp_path):
    """django-q2 starts a new worker; the next tick settles the dead one's claims."""
    from django_q.models import Schedule
    from django_q.tasks import async_task

    Schedule.objects.all().delete()  # only the ticks queued here run
    due_mailing(2000)
    sink.recorder.delay = 0.005
    env = {**worker_env, "DISPATCH_BATCH_SIZE": "100"}
    env.pop("SMTP_CONCURRENCY")
    journals = Path(env["DISPATCH_JOURNAL_DIR"])
    cluster = start(["qcluster"], env, tmp_path, "cluster")
    try:
        async_task("core.tasks.tick")
        assert wait_until(lambda: len(sink.messages) >= 400, timeout=120)
        holders = []
        assert wait_until(
            lambda: holders.extend(processes_holding(journals, cluster.pid)) or holders,
            timeout=30,
        )
        os.kill(holders[0], signal.SIGKILL)
        assert len(sink.messages) < 2000
        time.sleep(1)
        connection.close()
        assert dead_claims(journals), "the worker died holding no claim"
        async_task("core.tasks.tick")  # the schedule's next tick
        assert wait_until(all_final, timeout=180), (
            tmp_path / "cluster.log"
        ).read_text()[-2000:]
    finally:
        stop(cluster)

    counts = sink.recorder.count_by_address()
    assert max(counts.values()) == 1, "an address received two copies"
    connection.close()
    unknown = Attempt.objects.filter(status="unknown").count()
    sent = Attempt.objects.filter(status="sent").count()
    not_built = Attempt.objects.filter(status="failed", server_response=NOT_BUILT)
    assert sent + unknown + not_built.count() == 2000
    assert unknown <= 16  # the killed worker's connections, one in flight each
    assert sent <= len(counts) <= sent + unknown
