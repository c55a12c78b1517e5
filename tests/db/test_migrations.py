"""The schema in Alembic: one head, a clean round trip, no drift, named constraints."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from signdb.data.splits import split_of
from signdb.db import migrate
from signdb.db.engine import get_engine
from signdb.db.schema import metadata
from signdb.errors import SchemaOutOfDate

TABLES = {table.name for table in metadata.tables.values()}
VIEWS = {
    "run_summary",
    "leaderboard",
    "learning_curves",
    "confusion",
    "sweep_trials",
    "sweep_summary",
    "run_scores",
    "class_scores",
    "class_curves",
    "calibration",
    "model_alias_history",
    "served_hourly",
}


def _insert_sample_rows(pg: psycopg.Connection) -> int:
    ds = pg.execute(
        "INSERT INTO signdb.datasets (name, preprocessing, height, width, channels) "
        "VALUES ('d', '{}', 2, 2, 1) RETURNING id"
    ).fetchone()[0]
    img = pg.execute(
        "INSERT INTO signdb.images (dataset_id, label, pixels, height, width, channels, sha256, source) "
        "VALUES (%s, 1, '\\x01020304', 2, 2, 1, %s, 'a.png') RETURNING id",
        [ds, "a" * 64],
    ).fetchone()[0]
    run = pg.execute(
        "INSERT INTO signdb.runs (dataset_id, model, classes, hyperparams, seed, test_fraction) "
        "VALUES (%s, 'logreg', '{0,1}', '{}', 42, 0.15) RETURNING id",
        [ds],
    ).fetchone()[0]
    pg.execute(
        "INSERT INTO signdb.run_metrics (run_id, step, name, value) VALUES (%s, 0, 'cost', 0.7)",
        [run],
    )
    pg.execute("INSERT INTO signdb.predictions VALUES (%s, %s, 'test', 1, 1, 0.9)", [run, img])
    return run


def test_one_head(engine):
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate.alembic_config(engine)).get_heads()
    assert len(heads) == 1


def test_head_creates_every_table_and_view(pg):
    rows = pg.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'signdb'"
    ).fetchall()
    tables = {name for name, kind in rows if kind == "BASE TABLE"}
    views = {name for name, kind in rows if kind == "VIEW"}
    assert TABLES <= tables
    assert views == VIEWS


def test_no_drift_at_head(engine):
    status = migrate.check(engine)
    assert status.ok, status.drift


def test_round_trip_with_data(engine, pg):
    run = _insert_sample_rows(pg)
    assert migrate.downgrade(engine, "base") is None
    left = pg.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'signdb' "
        "AND table_name <> 'alembic_version'"
    ).fetchone()[0]
    assert left == 0
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    assert migrate.check(engine).ok
    # A fresh schema again: the old run is gone and new rows insert cleanly.
    assert pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == 0
    assert _insert_sample_rows(pg) >= run


def test_constraints_are_all_named_by_convention(pg):
    names = [
        r[0]
        for r in pg.execute(
            "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = 'signdb' AND c.contype IN ('p','f','u','c') "
            "AND c.conrelid <> 'signdb.alembic_version'::regclass"
        )
    ]
    assert names
    bad = [n for n in names if not n.startswith(("pk_", "fk_", "uq_", "ck_"))]
    assert bad == []


def test_require_current_refuses_an_empty_database(empty_db_url):
    engine = get_engine(empty_db_url)
    with pytest.raises(SchemaOutOfDate, match="run `signdb db upgrade`"):
        migrate.require_current(engine)


def test_concurrent_upgrades_serialise_on_the_advisory_lock(empty_db_url):
    # Separate processes, as in real life: Alembic's command API is not thread-safe.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "signdb", "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outcomes
    assert migrate.check(get_engine(empty_db_url)).ok


def test_split_function_matches_python(pg):
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    for seed, frac in [(42, 0.15), (7, 0.5), (0, 0.01)]:
        sql = [
            r[0]
            for r in pg.execute(
                "SELECT signdb.split_of(h, %s, %s) FROM unnest(%s::text[]) WITH ORDINALITY AS t(h, i) ORDER BY i",
                [seed, frac, hexes],
            )
        ]
        assert sql == [split_of(h, seed, frac) for h in hexes]


def test_evaluation_rates_are_derived_and_null_on_zero_denominators(pg):
    run = _insert_sample_rows(pg)
    pg.execute(
        "INSERT INTO signdb.evaluations (run_id, split, positive_class, threshold, tp, fp, tn, fn) VALUES "
        "(%s, 'test', 1, 0.5, 3, 1, 5, 1), (%s, 'test', 1, 1.0, 0, 0, 6, 4)",
        [run, run],
    )
    rows = pg.execute(
        "SELECT threshold, accuracy, precision, recall, f1 FROM signdb.evaluations ORDER BY threshold"
    ).fetchall()
    assert rows[0][1:] == pytest.approx((0.8, 0.75, 0.75, 0.75))
    assert rows[1][1] == pytest.approx(0.6)
    assert rows[1][2] is None  # tp + fp = 0
    assert rows[1][3] == 0.0
    assert rows[1][4] == 0.0
    with pytest.raises(psycopg.errors.GeneratedAlways):
        pg.execute("UPDATE signdb.evaluations SET f1 = 1")


def test_evaluation_argmax_rows_are_unique_per_class(pg):
    run = _insert_sample_rows(pg)
    insert = (
        "INSERT INTO signdb.evaluations (run_id, split, positive_class, threshold, tp, fp, tn, fn) "
        "VALUES (%s, 'test', 3, NULL, 1, 1, 1, 1)"
    )
    pg.execute(insert, [run])
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg.execute(insert, [run])


def test_stale_heartbeat_reads_as_interrupted(pg):
    run = _insert_sample_rows(pg)
    pg.execute(
        "UPDATE signdb.runs SET status = 'running', heartbeat_at = now() - interval '5 minutes' WHERE id = %s",
        [run],
    )
    status = pg.execute(
        "SELECT status FROM signdb.run_summary WHERE run_id = %s", [run]
    ).fetchone()[0]
    assert status == "interrupted"
    pg.execute("UPDATE signdb.runs SET heartbeat_at = now() WHERE id = %s", [run])
    status = pg.execute(
        "SELECT status FROM signdb.run_summary WHERE run_id = %s", [run]
    ).fetchone()[0]
    assert status == "running"


def test_engine_sessions_have_a_lock_timeout(engine):
    with engine.connect() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "30s"


def test_deleting_a_run_deletes_its_metrics_and_nothing_else(pg):
    run = _insert_sample_rows(pg)
    other = pg.execute(
        "INSERT INTO signdb.runs (dataset_id, model, classes, hyperparams, seed, test_fraction) "
        "SELECT dataset_id, model, classes, hyperparams, 7, test_fraction FROM signdb.runs "
        "WHERE id = %s RETURNING id",
        [run],
    ).fetchone()[0]
    pg.execute(
        "INSERT INTO signdb.run_metrics (run_id, step, name, value) VALUES (%s, 0, 'cost', 1)",
        [other],
    )
    pg.execute("DELETE FROM signdb.runs WHERE id = %s", [run])
    left = pg.execute("SELECT run_id, count(*) FROM signdb.run_metrics GROUP BY run_id").fetchall()
    assert left == [(other, 1)]


def test_check_names_a_view_that_differs_from_the_code(engine, pg):
    from signdb.db.views import VIEWS

    assert migrate.check(engine).ok
    tampered = VIEWS["confusion"].replace("count(*) AS count", "count(*) + 0 AS count")
    assert tampered != VIEWS["confusion"]
    pg.execute(f"CREATE OR REPLACE VIEW signdb.confusion AS {tampered}")
    status = migrate.check(engine)
    assert not status.ok
    assert any("view signdb.confusion differs" in d for d in status.drift), status.drift
    pg.execute(f"CREATE OR REPLACE VIEW signdb.confusion AS {VIEWS['confusion']}")
    pg.execute("CREATE VIEW signdb.stray AS SELECT 1 AS one")
    assert any("signdb.stray is not created by the code" in d for d in migrate.check(engine).drift)


def test_every_upgrade_ends_with_the_grant_step(engine, pg):
    def analyst_can_read(table: str) -> bool:
        return pg.execute(
            "SELECT has_table_privilege('signdb_analyst', %s, 'SELECT')", [f"signdb.{table}"]
        ).fetchone()[0]

    assert analyst_can_read("runs") and analyst_can_read("run_summary")
    pg.execute("REVOKE SELECT ON signdb.runs, signdb.run_summary FROM signdb_analyst")
    assert not analyst_can_read("runs")
    migrate.upgrade(engine)  # already at head: no revision runs, the grant step still does
    assert analyst_can_read("runs") and analyst_can_read("run_summary")


def test_constraint_names_are_exactly_the_schemas(pg):
    """The revisions create each constraint under the name the schema gives it (and no other)."""
    from sqlalchemy import CheckConstraint

    expected = {
        c.name
        for table in metadata.tables.values()
        for c in table.constraints
        if isinstance(c, CheckConstraint)
    }
    found = {
        r[0]
        for r in pg.execute(
            "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = 'signdb' AND c.contype = 'c'"
        )
    }
    assert found == expected


def test_three_way_split_functions_match_python(pg):
    from signdb.data.splits import split_value

    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(400)]
    for seed in (42, 0, -7, 2**31 - 1):
        rows = pg.execute(
            "SELECT signdb.split_fraction(h, %s), signdb.split_of(h, %s, 0.15, 0.2) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS t(h, i) ORDER BY i",
            [seed, seed, hexes],
        ).fetchall()
        assert [u for u, _ in rows] == [split_value(h, seed) for h in hexes]
        assert [s for _, s in rows] == [split_of(h, seed, 0.15, 0.2) for h in hexes]


def _optuna_tables(pg: psycopg.Connection) -> set[str]:
    rows = pg.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_name IN ('studies', 'trials', 'trial_heartbeats', 'alembic_version')"
    ).fetchall()
    return {f"{schema}.{name}" for schema, name in rows}


OPTUNA = {"optuna.studies", "optuna.trials", "optuna.trial_heartbeats", "optuna.alembic_version"}


def test_downgrade_leaves_the_sweeps_tables_unless_asked(engine, pg):
    pg.execute(  # a study, as a sweep leaves one
        "INSERT INTO optuna.studies (study_name) VALUES ('kept')"
    )
    assert _optuna_tables(pg) >= OPTUNA
    assert migrate.downgrade(engine, "base") is None
    assert _optuna_tables(pg) >= OPTUNA
    assert pg.execute("SELECT study_name FROM optuna.studies").fetchall() == [("kept",)]
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    assert migrate.check(engine).ok
    done = subprocess.run(
        [sys.executable, "-m", "signdb", "db", "downgrade", "base", "--drop-sweeps"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert not pg.execute("SELECT FROM pg_namespace WHERE nspname = 'optuna'").fetchall()
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    assert _optuna_tables(pg) >= OPTUNA and "public.alembic_version" not in _optuna_tables(pg)


def test_optuna_and_signdb_upgrades_work_in_either_order(empty_db_url):
    from signdb.db import sweep_storage

    engine = get_engine(empty_db_url)
    info = make_url(empty_db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    # Optuna first (its own tables in its own schema), then signdb.
    with psycopg.connect(info, autocommit=True) as pg:
        pg.execute("CREATE SCHEMA optuna")
        storage = sweep_storage.make_storage(engine.url, create_tables=True)
        storage.engine.dispose()
        assert migrate.upgrade(engine) == migrate.head_revision(engine)
        assert migrate.check(engine).ok
        # ... and Optuna's own upgrade after signdb's finds nothing to do.
        storage = sweep_storage.make_storage(engine.url)
        storage.upgrade()
        assert storage.get_current_version() == storage.get_head_version()
        storage.engine.dispose()
        assert "public.alembic_version" not in _optuna_tables(pg)
        assert pg.execute(
            "SELECT has_table_privilege('signdb_analyst', 'optuna.trials', 'SELECT'), "
            "has_table_privilege('signdb_analyst', 'optuna.trials', 'INSERT'), "
            "has_table_privilege('signdb_writer', 'optuna.trials', 'UPDATE')"
        ).fetchone() == (True, False, True)


def test_the_scores_revision_round_trips_on_a_database_holding_scores(engine, pg):
    run = _insert_sample_rows(pg)
    pg.execute("UPDATE signdb.predictions SET probabilities = '{0.1,0.9}' WHERE run_id = %s", [run])
    pg.execute(
        "INSERT INTO signdb.score_values VALUES (%s, 'test', 'accuracy', 0.9, 0.8, 1.0)", [run]
    )
    pg.execute(
        "INSERT INTO signdb.curves VALUES (%s, 'test', 1, 1, 0, '{Infinity}', '{0}', '{0}')", [run]
    )
    pg.execute("INSERT INTO signdb.calibration_bins VALUES (%s, 'test', 13, 1, 0.9, 1.0)", [run])
    interval = (
        "SELECT test_accuracy_low, test_accuracy_high FROM signdb.run_summary WHERE run_id = %s"
    )
    # Written straight into score_values, the interval is not on the run row yet.
    assert pg.execute(interval, [run]).fetchone() == (None, None)
    assert migrate.downgrade(engine, "0009") == "0009"  # 0009 reads it from score_values
    assert pg.execute(interval, [run]).fetchone() == (0.8, 1.0)
    assert migrate.upgrade(engine) == migrate.head_revision(engine)  # 0010 copies it over
    assert pg.execute(interval, [run]).fetchone() == (0.8, 1.0)
    assert migrate.check(engine).ok
    assert migrate.downgrade(engine, "0008") == "0008"
    columns = {
        r[0]
        for r in pg.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'signdb' AND table_name = 'predictions'"
        )
    }
    assert "probabilities" not in columns
    assert pg.execute("SELECT count(*) FROM signdb.predictions").fetchone() == (1,)
    assert pg.execute("SELECT to_regclass('signdb.score_values')").fetchone() == (None,)
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    assert migrate.check(engine).ok
    assert pg.execute(
        "SELECT probabilities, test_accuracy_low FROM signdb.predictions p "
        "JOIN signdb.run_summary s ON s.run_id = p.run_id"
    ).fetchall() == [(None, None)]


def test_the_curves_revision_carries_every_point_both_ways(engine, pg):
    run = _insert_sample_rows(pg)
    pg.execute(
        "INSERT INTO signdb.curves VALUES "
        "(%s, 'test', 0, 2, 3, '{Infinity,0.9,0.4,0.1}', '{0,1,1,2}', '{0,0,2,3}'), "
        "(%s, 'val', 1, 1, 0, '{Infinity,0.7}', '{0,1}', '{0,0}')",
        [run, run],
    )
    view = (
        "SELECT split, label, point, threshold, tp, fp, tn, fn, fpr, tpr, recall, precision "
        "FROM signdb.class_curves WHERE run_id = %s ORDER BY split, label, point"
    )
    at_head = pg.execute(view, [run]).fetchall()
    assert [r[2] for r in at_head] == [0, 1, 2, 3, 0, 1]
    assert at_head[2] == ("test", 0, 2, 0.4, 1, 2, 1, 1, 2 / 3, 0.5, 0.5, 1 / 3)
    assert at_head[4][8] is None  # no negatives: no false-positive rate
    assert migrate.downgrade(engine, "0010") == "0010"
    assert pg.execute("SELECT count(*) FROM signdb.curve_points").fetchone() == (6,)
    assert pg.execute(view, [run]).fetchall() == at_head
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    assert pg.execute(view, [run]).fetchall() == at_head
    assert pg.execute("SELECT to_regclass('signdb.curve_points')").fetchone() == (None,)
    assert migrate.check(engine).ok


def test_the_sha256_revision_accepts_and_refuses_what_the_regex_did(engine, pg):
    _insert_sample_rows(pg)  # an image with sha256 'a' * 64
    insert = (
        "INSERT INTO signdb.images (dataset_id, label, pixels, height, width, channels, sha256, "
        "source) SELECT dataset_id, 1, pixels, 2, 2, 1, %s, 'b.png' FROM signdb.images LIMIT 1"
    )
    refused = ["A" * 64, "a" * 63, "a" * 65, "g" + "a" * 63, "a" * 63 + "\n", ""]

    def outcomes() -> list[bool]:
        accepted = []
        for sha in refused + ["0123456789abcdef" * 4]:
            try:
                with pg.transaction():
                    pg.execute(insert, [sha])
                    raise psycopg.Rollback  # keep the table as it was
            except psycopg.errors.CheckViolation:
                accepted.append(False)
            else:
                accepted.append(True)
        return accepted

    expected = [False] * len(refused) + [True]
    assert outcomes() == expected
    collation = "SELECT collation_name FROM information_schema.columns WHERE table_schema = " \
        "'signdb' AND table_name = 'images' AND column_name = 'sha256'"  # fmt: skip
    assert pg.execute(collation).fetchone() == ("C",)
    assert migrate.downgrade(engine, "0011") == "0011"
    assert outcomes() == expected
    assert pg.execute(collation).fetchone() == (None,)
    assert migrate.upgrade(engine) == migrate.head_revision(engine)
    assert pg.execute("SELECT count(*) FROM signdb.images").fetchone() == (1,)
    assert migrate.check(engine).ok
