"""Alembic environment: the URL comes from signdb's config, never from alembic.ini.

Upgrades hold a PostgreSQL advisory lock so two processes never migrate the
same database at once, and run with lock/statement timeouts so a blocked
migration fails loudly instead of hanging.
"""

from alembic import context
from sqlalchemy import text

from signdb.db import roles, sweep_storage
from signdb.db.engine import get_engine
from signdb.db.schema import COMPARE_OPTIONS, SCHEMA, metadata

# Any constant shared by every signdb process; "signdb" in ASCII.
MIGRATION_LOCK_ID = 0x7369676E6462


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        with get_engine(config.get_main_option("sqlalchemy.url")).connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:  # noqa: ANN001
    connection.execute(text("SET lock_timeout = '30s'"))
    connection.execute(text("SET statement_timeout = '15min'"))
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
    try:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        connection.commit()
        if _reaches_sweeps():
            # Revision 0008's views read Optuna's tables: Optuna creates them
            # (idempotently) first, as this owner, in schema optuna.
            sweep_storage.ensure_tables(connection)
        context.configure(
            connection=connection,
            target_metadata=metadata,
            transaction_per_migration=True,
            **COMPARE_OPTIONS,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        _grant(connection)
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
        connection.commit()


SWEEPS_REVISION = "0008"


def _reaches_sweeps() -> bool:
    """True when the migration's destination is the sweeps revision or later."""
    from alembic.script import ScriptDirectory

    destination = context.get_revision_argument()
    if destination in (None, "base"):
        return False
    script = ScriptDirectory.from_config(context.config)
    heads = script.get_revisions(destination)
    return any(
        rev.revision == SWEEPS_REVISION
        for head in heads
        for rev in script.iterate_revisions(head.revision, "base")
    )


def _grant(connection) -> None:  # noqa: ANN001
    """The one grant step every migration run ends with: new tables and views get the
    roles' privileges without anyone remembering to re-run the grants. Skipped at
    base, where the roles' objects (and maybe the roles) are gone."""
    at = connection.execute(
        text(f"SELECT to_regclass('{SCHEMA}.alembic_version') IS NOT NULL")
    ).scalar()
    count = text(f"SELECT count(*) FROM {SCHEMA}.alembic_version")  # noqa: S608 - constant
    if at and connection.execute(count).scalar():
        statements = roles.create_roles_sql() + roles.grant_sql()
        if sweep_storage.schema_exists(connection):
            statements += roles.optuna_grant_sql()
        if _schema_exists(connection, "procrastinate"):  # the run queue (revision 0015)
            statements += roles.queue_grant_sql()
        for statement in statements:
            connection.execute(text(statement))
        connection.commit()


def _schema_exists(connection, name: str) -> bool:  # noqa: ANN001
    found = connection.execute(text("SELECT FROM pg_namespace WHERE nspname = :n"), {"n": name})
    return found.first() is not None


if context.is_offline_mode():
    raise SystemExit("signdb migrations run online only: use `signdb db upgrade`")
run_migrations_online()
