"""Audience at scale: segments, a mailing to one, the tag filter, a form.

Seeds one owner with 100,000 recipients, 5 custom fields and 20 tags (and
10 other owners with their own), then times in-process (server time, no
network):

- a two-condition segment's count (target < 300 ms);
- opening and enqueueing a run of a mailing to that segment (< 2 s, on
  PostgreSQL);
- the recipient list filtered by a tag (< 300 ms), with the same number of
  queries at 10 and 200 rows a page;
- a subscription form taking submissions from two processes at once, as
  two web workers would (>= 50 a second, none refused).

    make bench BENCH=audience   # SQLite, or PostgreSQL when DATABASE_URL is set
"""

import random
import re
import statistics
import time

from bench.support import (
    page_measure,
    queries_alike,
    setup_django,
    summary_print,
    teardown_django,
    verdict,
)

RECIPIENTS = 100_000
OTHER_OWNERS = 10
OTHER_RECIPIENTS = 2_000
TAGS = 20
CITIES = ["Москва", "Казань", "Тверь", "Омск", "Самара", "Пермь", "Сочи", "Уфа"]
PLANS = ["Базовый", "Стандарт", "Премиум"]
SEGMENT_MS = 300
ENQUEUE_S = 2.0
LIST_MS = 300
FORM_PER_SECOND = 50
SUBMISSIONS = 600
# Web workers taking submissions at once: one per core of this machine.
PROCESSES = 2


def seed():
    from django.db import connection

    from core.models import Client, Field, Tag
    from core.tests.factories import UserFactory

    rng = random.Random(11)
    owners = [
        UserFactory(email=f"owner{i}@example.com", verified=True, groups=["clients"])
        for i in range(OTHER_OWNERS + 1)
    ]
    big = owners[0]
    started = time.perf_counter()
    for owner in owners:
        Field.objects.bulk_create(
            [
                Field(owner=owner, key="city", label="Город"),
                Field(owner=owner, key="age", label="Возраст", kind="number"),
                Field(owner=owner, key="born", label="Дата рождения", kind="date"),
                Field(
                    owner=owner, key="plan", label="Тариф", kind="choice", choices=PLANS
                ),
                Field(owner=owner, key="vip", label="VIP", kind="boolean"),
            ]
        )
        tags = Tag.objects.bulk_create(
            Tag(owner=owner, name=f"Тег {n}", is_public=n < 3) for n in range(TAGS)
        )
        count = RECIPIENTS if owner is big else OTHER_RECIPIENTS
        clients = Client.objects.bulk_create(
            (
                Client(
                    owner=owner,
                    email=f"r{i:06d}.{owner.pk}@example.org",
                    full_name=f"Получатель {i}",
                    attributes={
                        "city": rng.choice(CITIES),
                        "age": rng.randint(18, 80),
                        "born": f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-15",
                        "plan": rng.choice(PLANS),
                        "vip": rng.random() < 0.1,
                    },
                )
                for i in range(count)
            ),
            batch_size=5000,
        )
        through = Client.tags.through
        through.objects.bulk_create(
            (
                through(client_id=client.pk, tag_id=tag.pk)
                for client in clients
                for tag in rng.sample(tags, rng.randint(0, 3))
            ),
            batch_size=10000,
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
        )
    return big, time.perf_counter() - started


def segment_of(owner, *, broad=False):
    """Two conditions: Moscow and a tag (a few per cent of the list), or,
    `broad`, older than 40 or with a tag (most of it)."""
    from core.models import Segment, Tag
    from core.models.segments import rules_clean

    tag = Tag.objects.filter(owner=owner).order_by("pk").first()
    if broad:
        match, first = "any", {"field": "attributes.age", "op": "gt", "value": 40}
    else:
        match, first = (
            "all",
            {"field": "attributes.city", "op": "eq", "value": "Москва"},
        )
    rules = {
        "match": match,
        "conditions": [first, {"field": "tag", "op": "has", "value": tag.pk}],
    }
    return Segment.objects.create(
        owner=owner,
        name="broad" if broad else "narrow",
        rules=rules_clean(rules, owner_id=owner.pk),
    )


def time_segment_count(segment):
    timings, count = [], None
    segment.members().count()  # warm the plan
    for _ in range(7):
        start = time.perf_counter()
        count = segment.members().count()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings), count


def time_enqueue(owner, segment):
    from django.utils import timezone

    from core.models import Attempt, Mailing, Message
    from core.services.dispatch import dispatch_tick

    timings, queued = [], 0
    for n in range(3):
        message = Message.objects.create(owner=owner, subject="Новости", body="Текст")
        mailing = Mailing.objects.create(
            owner=owner,
            title=f"Сегменту {n}",
            message=message,
            start_at=timezone.now() + timezone.timedelta(days=1),
        )
        mailing.segments.add(segment)
        start = time.perf_counter()
        dispatch_tick(mailing_id=mailing.pk, deliver_here=False)
        timings.append(time.perf_counter() - start)
        queued = Attempt.objects.filter(run__mailing=mailing).count()
    return statistics.median(timings), queued


def time_form(owner):
    """Submissions from PROCESSES processes at once, as web workers take
    them; each first loads the page once per submission (not timed) and
    waits as a person would before sending."""
    import multiprocessing

    from django.db import connections

    from core.models import Client, SubscriptionForm

    form = SubscriptionForm.objects.create(
        owner=owner,
        title="Новости",
        personal_data_text="Согласен на обработку персональных данных.",
        marketing_text="Согласен получать рекламу.",
    )
    form.fields.add(*owner_fields(owner, "city"))
    before = Client.objects.filter(owner=owner).count()
    connections.close_all()  # each process opens its own
    context = multiprocessing.get_context("fork")
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(
            _submit_share,
            [(form.slug, n, SUBMISSIONS // PROCESSES) for n in range(PROCESSES)],
        )
    refused = sum(r[0] for r in results)
    started = min(r[1] for r in results)
    ended = max(r[2] for r in results)
    created = Client.objects.filter(owner=owner).count() - before
    return SUBMISSIONS / (ended - started), refused, created


def _submit_share(slug, share, count):
    from django.test import Client as Browser

    from core.services import subscriptions

    url = f"/subscribe/{slug}/"
    browser = Browser()
    tokens = []
    for _ in range(count):
        page = browser.get(url)
        assert page.status_code == 200
        token = re.search(rb'name="token" value="([^"]+)"', page.content).group(1)
        tokens.append(token.decode())
    time.sleep(subscriptions.MIN_FILL_SECONDS + 0.1)  # as a person takes
    refused = 0
    started = time.time()
    for n, token in enumerate(tokens):
        number = share * count + n
        response = browser.post(
            url,
            {
                "token": token,
                "email": f"visitor{number}@example.net",
                "full_name": f"Посетитель {number}",
                "attribute_city": "Москва",
                "personal_data": "on",
                "marketing": "on",
            },
            REMOTE_ADDR=f"10.{number // 250}.{number % 250}.1",
        )
        refused += response.status_code != 302
    return refused, started, time.time()


def owner_fields(owner, *keys):
    from core.models import Field

    return list(Field.objects.filter(owner=owner, key__in=keys))


def main():
    engine = setup_django()
    try:
        from django.contrib import admin
        from django.test import Client as Browser

        from core.models import Client, Tag

        big, seeded = seed()
        print(f"database: {engine}")
        print(f"seeded {Client.objects.count():,} recipients in {seeded:.1f} s")
        all_ok = True

        segment = segment_of(big)
        for each in (segment, segment_of(big, broad=True)):
            ms, members = time_segment_count(each)
            ok = ms < SEGMENT_MS
            all_ok &= ok
            print(
                f"segment count, {each.name:6} {ms:7.1f} ms  {members:7,} members  "
                f"{verdict(ok)}"
            )
            seconds, queued = time_enqueue(big, each)
            ok = seconds < ENQUEUE_S and queued == members
            all_ok &= ok
            print(
                f"enqueue a run, {each.name:6} {seconds:7.2f} s   {queued:7,} attempts "
                f"{verdict(ok)}"
            )

        browser = Browser()
        browser.force_login(big)
        tag = Tag.objects.filter(owner=big).order_by("pk").first()
        # The tag filter has the target; the others are shown for
        # what they cost.
        pages = [
            ("recipients by tag", f"/admin/core/client/?tag={tag.pk}", True),
            (
                "recipients by segment",
                f"/admin/core/client/?segment={segment.pk}",
                False,
            ),
            ("segments (counts each)", "/admin/core/segment/", False),
            ("tags (with counts)", "/admin/core/tag/", False),
        ]
        for label, url, target in pages:
            ms, n_queries = page_measure(browser, url)
            ok = ms < LIST_MS
            if target:
                all_ok &= ok
            mark = verdict(ok) if target else "(no target)"
            print(f"{label:28} {ms:7.1f} ms  {n_queries:3} queries  {mark}")
        counts = queries_alike(
            browser, admin.site._registry[Client], f"/admin/core/client/?tag={tag.pk}"
        )
        ok = counts[0] == counts[1]
        all_ok &= ok
        print(
            f"queries by tag at 10 and 200 rows a page: {counts[0]} and {counts[1]}  "
            f"{verdict(ok)}"
        )

        rate, refused, created = time_form(big)
        ok = rate >= FORM_PER_SECOND and refused == 0 and created == SUBMISSIONS
        all_ok &= ok
        print(
            f"subscription form  {rate:7.1f} submissions/s  {refused} refused  "
            f"{created} created  {verdict(ok)}"
        )
        summary_print(all_ok)
    finally:
        teardown_django()


if __name__ == "__main__":
    main()
