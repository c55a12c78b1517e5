"""The run queue's schema: procrastinate's tables and functions in schema ``procrastinate``.

procrastinate's schema file names no schema: its objects go to the first schema
of the search path, and its functions find their tables through the caller's
search path. So revision 0015 creates them with ``search_path`` set to
``procrastinate``, every connection that talks to the queue sets the same path
(:func:`queue_conninfo` for the worker's psycopg pool, :data:`SEARCH_PATH` for
a SQLAlchemy transaction), and ``signdb db check`` compares the schema with the
one the installed procrastinate would create (:func:`queue_drift`).
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url

QUEUE_SCHEMA = "procrastinate"
#: What a transaction that calls procrastinate's functions sets (SET LOCAL).
SEARCH_PATH = f"{QUEUE_SCHEMA}, signdb, public"
_EXPECTED = "signdb_expected_queue"


def queue_conninfo(url: str | URL) -> str:
    """A libpq URL for procrastinate's psycopg pool: ``url`` with the queue's search path."""
    base = url if isinstance(url, URL) else make_url(url)
    query = dict(base.query)
    query["options"] = f"-csearch_path={QUEUE_SCHEMA}"
    # Never str() a URL: SQLAlchemy renders the password as ***.
    return base.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def schema_exists(conn: Connection) -> bool:
    found = conn.execute(
        text("SELECT FROM pg_namespace WHERE nspname = :n"), {"n": QUEUE_SCHEMA}
    ).first()
    return found is not None


def queue_drift(conn: Connection) -> list[str]:
    """How schema ``procrastinate`` differs from what the installed procrastinate creates.

    The expected schema is built in a scratch schema inside a transaction that is
    rolled back; tables, columns, indexes, functions, triggers and enum labels
    are compared with the schema names taken out.
    """
    if not schema_exists(conn):
        return [f"schema {QUEUE_SCHEMA} (the run queue) is missing; run `signdb db upgrade`"]
    from procrastinate.schema import SchemaManager

    try:
        conn.execute(text(f"CREATE SCHEMA {_EXPECTED}"))
        conn.execute(text(f"SET LOCAL search_path TO {_EXPECTED}"))
        conn.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))
        conn.execute(text("SET LOCAL search_path TO pg_catalog"))  # every name qualified
        actual = _catalog(conn, QUEUE_SCHEMA)
        expected = _catalog(conn, _EXPECTED)
    finally:
        conn.rollback()
    drift = [f"{QUEUE_SCHEMA}: missing {item}" for item in sorted(expected - actual)]
    drift += [f"{QUEUE_SCHEMA}: not procrastinate's: {item}" for item in sorted(actual - expected)]
    return drift


_CATALOG = """
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = :s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s
    UNION ALL
    SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(co.oid)
    FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = :s
    UNION ALL
    SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
           || md5(p.prosrc)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND NOT t.tgisinternal
    UNION ALL
    SELECT 'enum ' || ty.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
    FROM pg_type ty JOIN pg_enum e ON e.enumtypid = ty.oid
    JOIN pg_namespace n ON n.oid = ty.typnamespace WHERE n.nspname = :s GROUP BY ty.typname
"""


def _catalog(conn: Connection, schema: str) -> set[str]:
    rows = conn.execute(text(_CATALOG), {"s": schema}).scalars()
    return {row.replace(f"{schema}.", "") for row in rows}
