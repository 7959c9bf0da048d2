"""Planner statistics are refreshed where autovacuum would refresh them next
(core/services/planner.py)."""

import pytest
from django.db import connection

from core.models import Attempt, Client
from core.services.dispatch import dispatch_tick
from core.services.planner import statistics_refresh

from .factories import due_mailing, people

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def planned_rows(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]


def analyze(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")


def test_a_table_grown_past_the_threshold_is_analyzed_and_one_barely_changed_is_not(
    owner,
):
    table = Client._meta.db_table
    people(owner, 20)
    analyze(table)
    rows = planned_rows(table)
    assert rows >= 20
    # Changes this transaction made are not in the statistics views yet: the
    # caller names them. Fewer than autovacuum's threshold (50 rows and a
    # tenth of the table): nothing to do.
    assert statistics_refresh([Client], added={table: 40}) == []
    assert planned_rows(table) == rows
    Client.objects.bulk_create(
        Client(owner=owner, email=f"later{i}@example.org") for i in range(100)
    )
    assert statistics_refresh([Client], added={table: 100}) == [table]
    assert planned_rows(table) >= rows + 100


def test_opening_a_run_refreshes_what_its_claims_will_read(
    owner, smtp_server, django_capture_on_commit_callbacks, monkeypatch
):
    from core.services.dispatch import runs

    analyzed = []

    def spy(models, *, added=None):
        analyzed.append(
            (sorted(model._meta.db_table for model in models), dict(added or {}))
        )
        return statistics_refresh(models, added=added)

    monkeypatch.setattr(runs, "statistics_refresh", spy)
    due_mailing(owner, people(owner, 80))
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch_tick().sent == 80
    table = Attempt._meta.db_table
    assert analyzed == [(sorted([table, Client._meta.db_table]), {table: 80})]
    assert planned_rows(table) >= 80


def test_a_refusal_to_analyze_is_a_warning_not_a_failure(monkeypatch, caplog):
    original = connection.ops.quote_name
    # A table that is not there: ANALYZE fails, and the caller goes on.
    monkeypatch.setattr(
        connection.ops, "quote_name", lambda name: original(name + "_missing")
    )
    table = Client._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT before_refusal")
    assert statistics_refresh([Client], added={table: 10**6}) == []
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK TO SAVEPOINT before_refusal")
    assert "Planner statistics not refreshed" in caplog.text
