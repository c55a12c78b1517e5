"""signdb_analyst reads everything and writes nothing; roles survive other databases' downgrades."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from signdb.db import migrate
from signdb.db.engine import get_engine

from .test_migrations import _insert_sample_rows


def _as(db_url: str, role: str) -> psycopg.Connection:
    info = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(info, autocommit=True, options=f"-c role={role}")


def test_roles_exist(pg):
    roles = {r[0] for r in pg.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'signdb_%'")}
    assert {"signdb_analyst", "signdb_writer"} <= roles


def test_analyst_reads_views_and_tables(db_url, pg):
    _insert_sample_rows(pg)
    with _as(db_url, "signdb_analyst") as conn:
        for rel in (
            "runs",
            "images",
            "run_metrics",
            "run_summary",
            "leaderboard",
            "learning_curves",
            "confusion",
        ):
            query = sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier("signdb", rel))
            conn.execute(query).fetchall()
        assert conn.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == 1


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO signdb.datasets (name, preprocessing, height, width, channels) VALUES ('x', '{}', 1, 1, 1)",
        "UPDATE signdb.runs SET name = 'x'",
        "DELETE FROM signdb.run_metrics",
        "TRUNCATE signdb.images CASCADE",
        "DROP TABLE signdb.runs",
        "CREATE TABLE signdb.evil (id int)",
        "ALTER TABLE signdb.runs ADD COLUMN evil int",
        "SELECT nextval(pg_get_serial_sequence('signdb.runs', 'id'))",
        "SELECT setval(pg_get_serial_sequence('signdb.runs', 'id'), 1)",
    ],
)
def test_analyst_cannot_write(db_url, pg, statement):
    _insert_sample_rows(pg)
    with _as(db_url, "signdb_analyst") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    assert pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == 1


def test_writer_can_write(db_url):
    with _as(db_url, "signdb_writer") as conn:
        conn.execute(
            "INSERT INTO signdb.datasets (name, preprocessing, height, width, channels) VALUES ('w', '{}', 1, 1, 1)"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE signdb.runs")


def test_downgrade_keeps_roles_another_database_uses(db_url, pg):
    # The session's template database (and the roles' other users) still hold grants.
    migrate.downgrade(get_engine(db_url), "base")
    roles = {r[0] for r in pg.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'signdb_%'")}
    assert {"signdb_analyst", "signdb_writer"} <= roles
    grants = pg.execute(
        "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee LIKE 'signdb_%' "
        "AND table_schema = 'signdb'"
    ).fetchone()[0]
    assert grants == 0
    migrate.upgrade(get_engine(db_url))
    with _as(db_url, "signdb_analyst") as conn:
        conn.execute("SELECT * FROM signdb.runs").fetchall()
