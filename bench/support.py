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


def page_measure(browser, url, repeat=7):
    """(median server time in ms, queries of one request) of a GET."""
    import statistics

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    browser.get(url)  # warm caches and the plan
    timings = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = browser.get(url)
            timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(timings), len(queries)


def queries_alike(browser, model_admin, url) -> tuple[int, int]:
    """Queries of the page at 10 and at 200 rows: equal when none is per row."""
    counts = []
    for per_page in (10, 200):
        model_admin.list_per_page = per_page
        counts.append(page_measure(browser, url, repeat=1)[1])
    return counts[0], counts[1]


def summary_print(all_ok: bool) -> None:
    """The last lines of a benchmark: its memory, and whether all targets held."""
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    print("ALL OK" if all_ok else "SOME TARGETS MISSED")
