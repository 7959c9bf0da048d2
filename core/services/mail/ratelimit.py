"""A sending rate shared by every worker, on every machine, through the cache.

SMTP_RATE_LIMIT is "N/s", "N/m" or "N/h". A fixed window: each worker takes
a token just before it sends, and when the window is spent it waits for the
next one. The count lives in the cache, so the limit holds across threads
and processes wherever the cache is shared and counts atomically (Redis,
which the service uses when it runs on several machines).
"""

import threading
import time
from contextlib import nullcontext

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

# Threads of one process take turns: the file cache, the default, counts
# by reading and writing back, which two threads at once would undercount.
_taking = threading.Lock()

UNITS = {"s": 1, "m": 60, "h": 3600}


def rate_parse(spec: str) -> tuple[int, int]:
    """(messages, window seconds) of "50/s"; (0, 0) for no limit."""
    if not spec or not spec.strip():
        return 0, 0
    count, _, unit = spec.strip().partition("/")
    unit = unit.strip().lower()[:1] or "s"
    if unit not in UNITS or not count.strip().isdigit():
        raise ValueError(
            f"SMTP_RATE_LIMIT must look like 50/s or 10000/h, not {spec!r}"
        )
    return int(count), UNITS[unit]


def cache_counts_atomically() -> bool:
    """Whether the cache's increments hold across processes (Redis only)."""
    return isinstance(caches["default"], RedisCache)


class RateLimiter:
    def __init__(self, spec: str, *, key: str = "dispatch:rate"):
        self.limit, self.window = rate_parse(spec)
        self.key = key
        # Where the cache counts atomically threads need not take turns.
        self.atomic = cache_counts_atomically()

    def _take(self, key: str) -> int | None:
        """Count one more message in the window `key`; None if it expired."""
        if self.atomic:
            try:
                return cache.incr(key)
            except ValueError:
                pass  # the window's first message: no count yet
        with nullcontext() if self.atomic else _taking:
            cache.add(key, 0, timeout=self.window * 2)
            try:
                return cache.incr(key)
            except ValueError:
                return None

    def acquire(self, *, deadline: float | None = None) -> bool:
        """Take one message's token, waiting for the next window if need be;
        False when that window opens after `deadline` (time.monotonic())."""
        if not self.limit:
            return True
        while True:
            now = time.time()
            window = int(now // self.window)
            key = f"{self.key}:{window}"
            used = self._take(key)
            if used is None:
                continue  # the window's count expired between add and incr
            if used <= self.limit:
                return True
            wait = max((window + 1) * self.window - now, 0.001)
            if deadline is not None and time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)
