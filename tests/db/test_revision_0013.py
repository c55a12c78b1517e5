"""Revision 0013 (the server's): metric buckets summarise existing points, TEMP belongs to the
writer alone, and both come back out on a downgrade."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb.db import migrate
from signdb.db.engine import get_engine
from tests.db.test_metric_buckets import SUMMARY_FROM_BUCKETS, SUMMARY_FROM_POINTS
from tests.helpers import login_role


def test_0013_summarises_the_points_already_stored_and_round_trips(engine, pg):
    assert migrate.downgrade(engine, "0012") == "0012"
    ds = pg.execute(
        "INSERT INTO signdb.datasets (name, preprocessing, height, width, channels) "
        "VALUES ('d', '{}', 2, 2, 1) RETURNING id"
    ).fetchone()[0]
    run = pg.execute(
        "INSERT INTO signdb.runs (dataset_id, model, classes, hyperparams, seed, test_fraction) "
        "VALUES (%s, 'logreg', '{0,1}', '{}', 42, 0.15) RETURNING id",
        [ds],
    ).fetchone()[0]
    pg.execute(
        "INSERT INTO signdb.run_metrics (run_id, step, name, value) "
        "SELECT %s, s, m, sin(s * 0.1) * length(m) FROM generate_series(0, 9000) s, "
        "unnest(ARRAY['cost', 'test_accuracy']) m",
        [run],
    )
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    for width in (64, 4096):
        params = {"r": run, "w": width}
        expected = pg.execute(SUMMARY_FROM_POINTS, params).fetchall()
        assert pg.execute(SUMMARY_FROM_BUCKETS, params).fetchall() == expected
        assert len(expected) == 2 * (9000 // width + 1)
    assert migrate.check(engine).ok
    assert migrate.downgrade(engine, "0012") == "0012"
    assert pg.execute("SELECT to_regclass('signdb.metric_buckets')").fetchone() == (None,)
    assert pg.execute("SELECT count(*) FROM signdb.run_metrics").fetchone() == (18002,)
    assert migrate.upgrade(engine) == migrate.head_revision(engine)


def test_only_the_writer_may_create_temporary_tables(pg_admin_url, empty_db_url):
    """Database privileges are not copied from a template, so this migrates a new database."""
    engine = get_engine(empty_db_url)
    migrate.upgrade(engine)

    def as_login(role: str) -> str:
        return (
            make_url(empty_db_url)
            .set(drivername="postgresql", username=role)
            .render_as_string(hide_password=False)
        )

    with login_role(pg_admin_url, "signdb_analyst") as analyst:
        with psycopg.connect(as_login(analyst)) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TEMPORARY TABLE pwned (x int)")
    with login_role(pg_admin_url, "signdb_writer") as writer:
        with psycopg.connect(as_login(writer)) as conn:
            conn.execute("CREATE TEMPORARY TABLE staging (x int)")
    public_temp = "SELECT has_database_privilege('public', current_database(), 'TEMPORARY')"
    with psycopg.connect(empty_db_url.replace("+psycopg", ""), autocommit=True) as owner:
        assert owner.execute(public_temp).fetchone() == (False,)
        migrate.downgrade(engine, "0012")
        assert owner.execute(public_temp).fetchone() == (True,)
    engine.dispose()
