"""Fresh planner statistics for tables that grow faster than autovacuum looks.

PostgreSQL plans each query by what it last learned of the tables (ANALYZE).
Autovacuum analyzes a table again once it has changed by more than a
threshold and a share of its rows (`autovacuum_analyze_threshold`,
`autovacuum_analyze_scale_factor`), but only at its next round, up to a
minute later, and never where it is switched off. A run inserts its
attempts and the claims read them at once, joined with recipients an import
may have just added: planned on statistics older than both, a claim of 200
attempts read every recipient of the table (40 ms instead of 3, with 50,000
recipients). So what autovacuum would analyze at its next round, opening a
run analyzes now, as PostgreSQL's manual advises after a bulk load
("Populating a Database": run ANALYZE afterwards). A table's own autovacuum
settings (storage parameters) are not read: the server's are.
"""

import logging

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


def statistics_refresh(models, *, added: dict | None = None) -> list[str]:
    """ANALYZE the tables of `models` that changed past autovacuum's analyze
    threshold since their last ANALYZE; the tables analyzed.

    `added`: table → rows just inserted by this connection, which the
    statistics views may not count yet (a backend reports them within a
    second or so). A table never analyzed counts as having no rows.
    """
    if connection.vendor != "postgresql":
        return []  # SQLite plans these queries well without statistics
    added = added or {}
    tables = [model._meta.db_table for model in models]
    stale = []
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.reltuples, COALESCE(s.n_mod_since_analyze, 0), "
                "current_setting('autovacuum_analyze_threshold')::float, "
                "current_setting('autovacuum_analyze_scale_factor')::float "
                "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE c.oid = ANY(%s::regclass[])",
                [tables],
            )
            for name, rows, changed, threshold, share in cursor.fetchall():
                changed += added.get(name, 0)
                if changed > threshold + share * max(rows, 0):
                    stale.append(name)
            for name in stale:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(name)}")
    except DatabaseError as error:
        # Plans may be slower until autovacuum gets there; nothing is wrong.
        logger.warning("Planner statistics not refreshed: %s", error)
        return []
    return stale
