"""Back-office pages at scale.

Seeds 100,000 recipients and 1,000,000 attempts for one owner, plus 10 other
owners with data, then times the owner's recipient list and attempt reports
in-process (server time, no network) and counts their queries at two page
sizes: the count must not grow with the rows a page shows.

    make bench BENCH=admin      # SQLite, or PostgreSQL when DATABASE_URL is set
"""

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
RUNS = 10  # 10 runs × 100,000 recipients = 1,000,000 attempts
OTHER_OWNERS = 10
OTHER_RECIPIENTS = 2_000
TARGET_MS = 300


def seed():
    from django.db import connection
    from django.utils import timezone

    from core.models import Client, Mailing, MailingRun, Message
    from core.tests.factories import UserFactory

    owners = [
        UserFactory(email=f"owner{i}@example.com", verified=True, groups=["clients"])
        for i in range(OTHER_OWNERS + 1)
    ]
    big = owners[0]
    started = time.perf_counter()
    for owner, count in [(big, RECIPIENTS)] + [
        (o, OTHER_RECIPIENTS) for o in owners[1:]
    ]:
        Client.objects.bulk_create(
            (
                Client(
                    owner=owner,
                    email=f"r{i:06d}.{owner.pk}@example.org",
                    full_name=f"Получатель {i}",
                )
                for i in range(count)
            ),
            batch_size=5000,
        )
    runs = {}
    for owner in owners:
        message = Message.objects.create(owner=owner, subject="Новости", body="Текст")
        mailing = Mailing.objects.create(
            owner=owner,
            title=f"Рассылка {owner.pk}",
            message=message,
            start_at=timezone.now(),
            periodicity=Mailing.Periodicity.DAILY,
        )
        n_runs = RUNS if owner is big else 1
        runs[owner.pk] = MailingRun.objects.bulk_create(
            MailingRun(
                mailing=mailing,
                owner=owner,
                scheduled_for=timezone.now() - timezone.timedelta(days=d),
                status=MailingRun.Status.FINISHED,
            )
            for d in range(n_runs)
        )
    seeded_recipients = time.perf_counter() - started

    # One set-based INSERT per run: the ORM would need minutes for a million.
    started = time.perf_counter()
    vendor = connection.vendor
    statuses = (
        "CASE WHEN c.id %% 50 = 0 THEN 'failed' "
        "WHEN c.id %% 97 = 0 THEN 'skipped' ELSE 'sent' END"
    )
    response = (
        "CASE WHEN c.id %% 50 = 0 THEN '550 5.1.1 User unknown' ELSE '250 2.0.0 Ok' END"
    )
    now_sql = "CURRENT_TIMESTAMP"
    with connection.cursor() as cursor:
        for owner in owners:
            for run in runs[owner.pk]:
                cursor.execute(
                    f"""
                    INSERT INTO core_attempt
                        (run_id, owner_id, client_id, email, status, tries,
                         server_response, attempted_at, created_at)
                    SELECT %s, %s, c.id, c.email, {statuses}, 1, {response},
                           {now_sql}, {now_sql}
                    FROM core_client c WHERE c.owner_id = %s
                    """,
                    [run.pk, owner.pk, owner.pk],
                )
        if vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("ANALYZE")
    seeded_attempts = time.perf_counter() - started
    return big, runs[big.pk][0], seeded_recipients, seeded_attempts


def main():
    engine = setup_django()
    try:
        from django.contrib import admin
        from django.test import Client as Browser

        from core.models import Attempt, Client

        big, run, t_recipients, t_attempts = seed()
        print(f"database: {engine}")
        print(
            f"seeded {Client.objects.count():,} recipients in {t_recipients:.1f} s, "
            f"{Attempt.objects.count():,} attempts in {t_attempts:.1f} s"
        )
        browser = Browser()
        browser.force_login(big)
        pages = [
            ("recipients", "/admin/core/client/"),
            ("recipients, search", "/admin/core/client/?q=r09999"),
            ("recipients, last page", "/admin/core/client/?p=1999"),
            ("attempts", "/admin/core/attempt/"),
            ("attempts, failed", "/admin/core/attempt/?status__exact=failed"),
            ("attempts of one run", f"/admin/core/attempt/?run__id__exact={run.pk}"),
            ("runs", "/admin/core/mailingrun/"),
            ("mailings", "/admin/core/mailing/"),
            ("dashboard", "/admin/"),
        ]
        all_ok = True
        for label, url in pages:
            ms, n_queries = page_measure(browser, url)
            ok = ms < TARGET_MS
            all_ok &= ok
            print(f"{label:24} {ms:7.1f} ms  {n_queries:3} queries  {verdict(ok)}")

        # The same pages at two page sizes: queries must not grow with rows.
        for model, url in [
            (Client, "/admin/core/client/"),
            (Attempt, "/admin/core/attempt/"),
        ]:
            counts = queries_alike(browser, admin.site._registry[model], url)
            ok = counts[0] == counts[1]
            all_ok &= ok
            print(
                f"{model._meta.model_name} queries at 10 and 200 rows a page: "
                f"{counts[0]} and {counts[1]}  {verdict(ok)}"
            )
        summary_print(all_ok)
    finally:
        teardown_django()


if __name__ == "__main__":
    main()
