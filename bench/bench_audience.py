"""Audience at scale: segments, a mailing to one, the tag filter, a form.

Seeds one owner with 100,000 recipients, 5 custom fields and 20 tags (and
10 other owners with their own), then times in-process (server time, no
network):

- a two-condition segment's count (target < 300 ms);
- opening and enqueueing a run of a mailing to that segment (< 2 s, on
  PostgreSQL);
- the recipient list filtered by a tag (< 300 ms), with the same number of
  queries at 10 and 200 rows a page;
- a subscription form taking submissions one after another (>= 50 a second,
  none refused).

    make bench BENCH=audience   # SQLite, or PostgreSQL when DATABASE_URL is set
"""

import random
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
SUBMISSIONS = 500


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


def segment_of(owner):
    from core.models import Segment, Tag
    from core.models.segments import rules_clean

    tag = Tag.objects.filter(owner=owner).order_by("pk").first()
    rules = {
        "match": "all",
        "conditions": [
            {"field": "attributes.city", "op": "eq", "value": "Москва"},
            {"field": "tag", "op": "has", "value": tag.pk},
        ],
    }
    return Segment.objects.create(
        owner=owner, name="Москва и тег", rules=rules_clean(rules, owner_id=owner.pk)
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
    from django.test import Client as Browser

    from core.models import Client, SubscriptionForm
    from core.services import subscriptions

    form = SubscriptionForm.objects.create(
        owner=owner,
        title="Новости",
        personal_data_text="Согласен на обработку персональных данных.",
        marketing_text="Согласен получать рекламу.",
    )
    form.fields.add(*owner_fields(owner, "city"))
    url = f"/subscribe/{form.slug}/"
    browser = Browser()
    tokens = []
    for _ in range(SUBMISSIONS):
        page = browser.get(url)
        assert page.status_code == 200
        tokens.append(page.context["form"]["token"].value())
    time.sleep(subscriptions.MIN_FILL_SECONDS + 0.1)  # as a person takes
    before = Client.objects.filter(owner=owner).count()
    refused = 0
    start = time.perf_counter()
    for n, token in enumerate(tokens):
        response = browser.post(
            url,
            {
                "token": token,
                "email": f"visitor{n}@example.net",
                "full_name": f"Посетитель {n}",
                "attribute_city": "Москва",
                "personal_data": "on",
                "marketing": "on",
            },
            REMOTE_ADDR=f"10.{n // 250}.{n % 250}.1",
        )
        refused += response.status_code != 302
    seconds = time.perf_counter() - start
    created = Client.objects.filter(owner=owner).count() - before
    return SUBMISSIONS / seconds, refused, created


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
        ms, members = time_segment_count(segment)
        ok = ms < SEGMENT_MS
        all_ok &= ok
        print(
            f"segment count (2 conditions) {ms:7.1f} ms  {members:,} members  "
            f"{verdict(ok)}"
        )

        seconds, queued = time_enqueue(big, segment)
        ok = seconds < ENQUEUE_S and queued == members
        all_ok &= ok
        print(
            f"enqueue a run to the segment {seconds:7.2f} s   {queued:,} attempts  "
            f"{verdict(ok)}"
        )

        browser = Browser()
        browser.force_login(big)
        tag = Tag.objects.filter(owner=big).order_by("pk").first()
        pages = [
            ("recipients by tag", f"/admin/core/client/?tag={tag.pk}"),
            ("recipients by segment", f"/admin/core/client/?segment={segment.pk}"),
            ("segments", "/admin/core/segment/"),
            ("tags", "/admin/core/tag/"),
        ]
        for label, url in pages:
            ms, n_queries = page_measure(browser, url)
            ok = ms < LIST_MS
            all_ok &= ok
            print(f"{label:28} {ms:7.1f} ms  {n_queries:3} queries  {verdict(ok)}")
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
