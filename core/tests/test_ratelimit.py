"""SMTP_RATE_LIMIT: one rate for every worker, counted in the shared cache."""

import multiprocessing
import os
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from core.services.mail.ratelimit import RateLimiter, rate_parse


def limiter(spec):
    # A key of the test's own: runs never share a window's count.
    return RateLimiter(spec, key=f"test:rate:{uuid.uuid4().hex}")


def at_the_next_second():
    """Wait until just after a second begins, so a window's takers all
    record times inside it."""
    time.sleep(1.02 - time.time() % 1)


def per_second(moments):
    return Counter(int(moment) for moment in moments)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("50/s", (50, 1)),
        ("10000/h", (10000, 3600)),
        ("5/m", (5, 60)),
        ("", (0, 0)),
    ],
)
def test_a_rate_is_read_as_messages_per_window(spec, parsed):
    assert rate_parse(spec) == parsed


@pytest.mark.parametrize("spec", ["fast", "10/d"])
def test_a_rate_that_is_not_one_is_refused_saying_what_is_meant(spec):
    with pytest.raises(ValueError) as refused:
        rate_parse(spec)
    message = str(refused.value)
    assert "SMTP_RATE_LIMIT" in message
    assert "50/s" in message and repr(spec) in message


def test_no_rate_never_waits():
    unlimited = limiter("")
    started = time.monotonic()
    for _ in range(1000):
        unlimited.acquire()
    assert time.monotonic() - started < 0.5


def test_a_rate_holds_across_threads():
    rate = limiter("15/s")

    def take(_):
        rate.acquire()
        return time.time()

    at_the_next_second()
    with ThreadPoolExecutor(max_workers=8) as pool:
        moments = list(pool.map(take, range(45)))
    counts = per_second(moments)
    assert sum(counts.values()) == 45
    assert max(counts.values()) <= 15, counts
    assert len(counts) >= 3  # 45 at 15 a second need three seconds


@pytest.fixture
def redis_cache(settings):
    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {url} is not reachable: {error}")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
        }
    }
    yield url
    # Back to the test's memory cache before the shared fixture clears it:
    # clearing Redis would empty the database other tests may be using.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }


@pytest.mark.slow
def test_a_rate_holds_across_processes_sharing_redis(redis_cache):
    from django.core.cache import cache

    rate = limiter("10/s")
    context = multiprocessing.get_context("fork")
    ready, go, results = context.Barrier(4), context.Event(), context.Queue()

    def take(count):
        cache.get("warm up")  # each process opens its own connection first
        ready.wait(timeout=10)
        go.wait(timeout=10)
        moments = []
        for _ in range(count):
            rate.acquire()
            moments.append(time.time())
        results.put((os.getpid(), moments))

    processes = [context.Process(target=take, args=(8,)) for _ in range(3)]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=10)
        at_the_next_second()
        go.set()
        taken = dict(results.get(timeout=15) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=5)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert sorted(taken) == sorted(process.pid for process in processes)
    counts = per_second(moment for moments in taken.values() for moment in moments)
    assert sum(counts.values()) == 24
    assert max(counts.values()) <= 10, counts
    assert len(counts) >= 3  # 24 at 10 a second need three seconds


def test_a_malformed_rate_stops_the_service_at_start_up(settings):
    settings.SMTP_RATE_LIMIT = "fast"
    with pytest.raises(SystemCheckError, match="core.E001.*not 'fast'"):
        call_command("check")
    settings.SMTP_RATE_LIMIT = "50/s"
    call_command("check")
