"""Alembic, configured in code: upgrade, downgrade, current revision, drift check."""

from __future__ import annotations

import importlib.resources
from contextlib import contextmanager
from dataclasses import dataclass

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from signdb.db.engine import translate_errors
from signdb.db.queue_schema import queue_drift
from signdb.db.schema import COMPARE_OPTIONS, SCHEMA, metadata
from signdb.db.views import VIEWS
from signdb.errors import SchemaOutOfDate


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    # Found through the package, so an installed wheel migrates as well as a checkout.
    cfg.set_main_option("script_location", str(importlib.resources.files("signdb.migrations")))
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


@contextmanager
def _bound(engine: Engine):
    cfg = alembic_config(engine)
    with translate_errors(engine), engine.connect() as conn:
        cfg.attributes["connection"] = conn
        yield cfg


def head_revision(engine: Engine) -> str:
    heads = ScriptDirectory.from_config(alembic_config(engine)).get_heads()
    if len(heads) != 1:  # pragma: no cover - guarded by a test
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with translate_errors(engine), engine.connect() as conn:
        exists = conn.execute(
            text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{SCHEMA}.alembic_version"}
        ).scalar()
        if not exists:
            return None
        return MigrationContext.configure(
            conn, opts={"version_table_schema": SCHEMA}
        ).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    with _bound(engine) as cfg:
        command.upgrade(cfg, revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str, *, drop_sweeps: bool = False) -> str | None:
    """Migrate down to ``revision``; Optuna's tables stay unless ``drop_sweeps``."""
    with _bound(engine) as cfg:
        cfg.attributes["drop_sweeps"] = drop_sweeps
        command.downgrade(cfg, revision)
    return current_revision(engine)


@dataclass(frozen=True)
class SchemaStatus:
    revision: str | None
    head: str
    drift: list[str]

    @property
    def ok(self) -> bool:
        return self.revision == self.head and not self.drift


def check(engine: Engine) -> SchemaStatus:
    """Compare the database with the code: revision and (at head) table and view drift."""
    head = head_revision(engine)
    revision = current_revision(engine)
    drift: list[str] = []
    if revision == head:
        with (
            translate_errors(engine, "comparing the schema with the code"),
            engine.connect() as conn,
        ):
            ctx = MigrationContext.configure(
                conn, opts={**COMPARE_OPTIONS, "target_metadata": metadata}
            )
            drift = [str(d) for d in compare_metadata(ctx, metadata)]
            drift += view_drift(conn)
            drift += queue_drift(conn)
    return SchemaStatus(revision, head, drift)


def view_drift(conn) -> list[str]:  # noqa: ANN001 - a SQLAlchemy Connection
    """Views whose definition differs from :data:`signdb.db.views.VIEWS`.

    Each expected definition is created as a temporary view in a transaction
    that is rolled back, so PostgreSQL normalises both texts the same way
    (``pg_get_viewdef``) before they are compared.
    """
    found = set(
        conn.execute(
            text("SELECT viewname FROM pg_views WHERE schemaname = :s"), {"s": SCHEMA}
        ).scalars()
    )
    drift = [
        f"view {SCHEMA}.{name} is not created by the code" for name in sorted(found - set(VIEWS))
    ]
    drift += [f"view {SCHEMA}.{name} is missing" for name in VIEWS if name not in found]
    try:
        for name, body in VIEWS.items():
            if name not in found:
                continue
            conn.execute(text(f"CREATE TEMPORARY VIEW signdb_expected_{name} AS {body}"))  # noqa: S608 - constant view text
            actual, expected = conn.execute(
                text(
                    "SELECT pg_get_viewdef(CAST(:a AS regclass)), "
                    "pg_get_viewdef(CAST(:e AS regclass))"
                ),
                {"a": f"{SCHEMA}.{name}", "e": f"signdb_expected_{name}"},
            ).one()
            if actual != expected:
                drift.append(
                    f"view {SCHEMA}.{name} differs from signdb/db/views.py; add a revision "
                    "that recreates it (or update views.py to match the revisions)"
                )
    finally:
        conn.rollback()  # the temporary views go with it
    return drift


def require_current(engine: Engine, *, fix: str = "signdb db upgrade") -> None:
    """Refuse to work against a database whose schema is not at head."""
    head = head_revision(engine)
    revision = current_revision(engine)
    if revision != head:
        where = "has no signdb schema" if revision is None else f"is at revision {revision}"
        raise SchemaOutOfDate(
            f"the database {where}, but this signdb needs revision {head}; run `{fix}`"
        )
