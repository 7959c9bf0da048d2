"""Shared set-up for benchmarks: a throw-away database and timing helpers.

With DATABASE_URL pointing at PostgreSQL a database named `<name>_bench_<pid>`
is created next to it and dropped afterwards; otherwise a SQLite file under
var/bench/, removed afterwards.
"""

import os
import resource
import time
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def setup_django():
    """Point Django at a fresh benchmark database and migrate it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # The development settings (no SECRET_KEY needed); DEBUG goes off below.
    os.environ.setdefault("DEBUG", "True")
    os.environ.setdefault("ENV_FILE", str(BASE_DIR / ".env"))
    os.environ["AXES_ENABLED"] = "False"
    import django
    from django.conf import settings

    django.setup()
    # Debug mode keeps every query in memory, which would skew RSS and time.
    settings.DEBUG = False
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        # One file per run: two benchmarks at once must not share a database.
        path = BASE_DIR / "var" / "bench" / f"bench-{os.getpid()}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        db["NAME"] = str(path)
    else:
        from django.db import connection

        bench_name = f"{db['NAME']}_bench_{os.getpid()}"
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{bench_name}"')
            cursor.execute(f'CREATE DATABASE "{bench_name}"')
        connection.close()
        db["NAME"] = bench_name
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return db["ENGINE"].rsplit(".", 1)[-1]


def teardown_django():
    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        connection.close()
        Path(db["NAME"]).unlink(missing_ok=True)
        return
    name = db["NAME"]
    connection.close()
    db["NAME"] = "postgres"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    connection.close()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed():
    """Yield a dict whose "seconds" is filled when the block ends."""
    result = {}
    start = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - start


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"
