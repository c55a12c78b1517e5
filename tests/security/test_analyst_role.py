"""``signdb_analyst`` reads everything and writes nothing.

The test connects *as* a login role that is a member of ``signdb_analyst``
(not as a superuser with ``SET ROLE``, which ``RESET ROLE`` would undo), tries
every kind of write and checks each one fails with insufficient_privilege and
leaves the data as it was. The login role gets a per-process name, because
roles are cluster-wide and other test sessions may share the server.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from signdb.db.roles import ANALYST, PRIVATE_TABLES, WRITER
from tests.helpers import signdb

INSUFFICIENT_PRIVILEGE = "42501"


def _conninfo(url: str, **overrides: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", **overrides)
        .render_as_string(hide_password=False)
    )


#: signdb's own, the sweeps' Optuna tables, and the run queue's procrastinate tables
SCHEMAS = ("signdb", "optuna", "procrastinate")


@pytest.fixture
def populated(db_url: str, mini_dataset_dir: Path, tmp_path: Path) -> dict:
    """A database with a dataset, a finished run, its predictions and evaluations, and a
    finished one-trial sweep (rows in every Optuna table the analyst could attack)."""
    tree = tmp_path / "tree"
    for label in ("0", "1"):
        shutil.copytree(mini_dataset_dir / label, tree / label)
    assert signdb("load", str(tree), "--dataset", "a", "--workers", "1").returncode == 0
    trained = signdb("train", "--dataset", "a", "--iterations", "20", "--json")
    assert trained.returncode == 0, trained.stderr
    run_id = json.loads(trained.stdout)["run_id"]
    evaluated = signdb("evaluate", str(run_id), "--thresholds", "0:1:0.25")
    assert evaluated.returncode == 0, evaluated.stderr
    created = signdb(
        "sweep", "create", "s", "--dataset", "a", "--param", "lr=float:0.01:0.1",
        "--param", "hidden=[4]", "--param", "iterations=2", "--trials", "1",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    worked = signdb("sweep", "work", "s")
    assert worked.returncode == 0, worked.stderr
    for _ in range(2):  # rows in the queue's tables: a waiting job and a cancelled one
        queued = signdb("submit", "--dataset", "a", "--iterations", "5", "--json")
        assert queued.returncode == 0, queued.stderr
    assert signdb("runs", "cancel", str(json.loads(queued.stdout)["run_id"])).returncode == 0
    return {"url": db_url, "run_id": run_id}


@pytest.fixture
def analyst_login(pg_admin_url: str):
    """A LOGIN role in signdb_analyst (trust auth, no password); dropped afterwards."""
    name = f"signdb_test_analyst_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _conninfo(pg_admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(name), sql.Identifier(ANALYST)
            )
        )
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [name],
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


Name = tuple[str, str]  # (schema, relation)


def _objects(conn: psycopg.Connection) -> tuple[list[Name], list[Name], list[Name]]:
    """(tables, views, sequences) of schemas signdb and optuna."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1, 2",
        [list(SCHEMAS)],
    ).fetchall()
    tables = [(n, r) for n, r, k in rows if k in ("r", "p")]
    views = [(n, r) for n, r, k in rows if k in ("v", "m")]
    sequences = [(n, r) for n, r, k in rows if k == "S"]
    return tables, views, sequences


def _snapshot(conn: psycopg.Connection, tables: list[Name]) -> dict[Name, str]:
    """An md5 of each table's full contents, to prove nothing changed."""
    return {
        t: conn.execute(
            sql.SQL(
                "SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {} x"
            ).format(sql.Identifier(*t))
        ).fetchone()[0]
        for t in tables
    }


def test_the_analyst_role_is_read_only(populated: dict, analyst_login: str, pg_admin_url: str):
    url, run_id = populated["url"], populated["run_id"]
    with psycopg.connect(_conninfo(url), autocommit=True) as owner:
        tables, views, sequences = _objects(owner)
        own = {"runs", "images", "weights", "evaluations", "predictions", "sweeps"}
        assert {("signdb", t) for t in own} <= set(tables)
        optuna = {"studies", "trials", "trial_params", "trial_values", "trial_heartbeats"}
        assert {("optuna", t) for t in optuna} <= set(tables)
        assert {
            ("signdb", v)
            for v in ("run_summary", "leaderboard", "learning_curves", "confusion")
            + ("sweep_trials", "sweep_summary")
        } <= set(views)
        assert sequences, "identity columns have sequences to attack"
        empty = [t for t in tables if t[0] == "optuna" and t[1] in optuna and not owner.execute(
            sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(*t))).fetchone()[0]]  # fmt: skip
        assert not empty, f"the sweep left these Optuna tables empty: {empty}"
        before = _snapshot(owner, tables)
        owner_pid = owner.execute("SELECT pg_backend_pid()").fetchone()[0]

        attempts: list[str | sql.Composed] = []
        for t in tables:
            ident = sql.Identifier(*t)
            column = sql.Identifier(_first_column(owner, t))
            attempts += [
                sql.SQL(template).format(t=ident, c=column)
                for template in (
                    "INSERT INTO {t} DEFAULT VALUES",
                    "INSERT INTO {t} ({c}) SELECT {c} FROM {t} LIMIT 1",
                    "UPDATE {t} SET {c} = {c}",
                    "DELETE FROM {t}",
                    "TRUNCATE {t}",
                    "TRUNCATE {t} CASCADE",
                    "COPY {t} FROM STDIN",
                    "COPY {t} FROM '/etc/hostname'",
                    "ALTER TABLE {t} ADD COLUMN pwned int",
                    "DROP TABLE {t} CASCADE",
                    "CREATE INDEX ON {t} ((1))",
                    "CREATE TRIGGER pwned BEFORE INSERT ON {t} "
                    "FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
                    "COMMENT ON TABLE {t} IS 'pwned'",
                    "ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
                    "SELECT * FROM {t} LIMIT 1 FOR UPDATE",
                )
            ]
        for schema, v in views:
            attempts += [
                f"DROP VIEW {schema}.{v} CASCADE",
                f"CREATE OR REPLACE VIEW {schema}.{v} AS SELECT 1 AS x",
                f"ALTER VIEW {schema}.{v} RENAME TO pwned",
            ]
        for schema, q in sequences:
            attempts += [
                f"SELECT nextval('{schema}.{q}')",
                f"SELECT setval('{schema}.{q}', 1)",
                f"ALTER SEQUENCE {schema}.{q} RESTART",
            ]
        attempts += [
            "CREATE TABLE signdb.pwned (x int)",
            "CREATE TABLE optuna.pwned (x int)",
            "DROP SCHEMA optuna CASCADE",
            "DROP TYPE optuna.trialstate CASCADE",
            "CREATE TABLE public.pwned (x int)",
            "CREATE VIEW public.pwned AS SELECT 1",
            "CREATE FUNCTION signdb.pwned() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE SCHEMA pwned",
            "DROP SCHEMA signdb CASCADE",
            "ALTER SCHEMA signdb RENAME TO pwned",
            "DROP FUNCTION signdb.split_of(text, integer, double precision)",
            "CREATE OR REPLACE FUNCTION signdb.heartbeat_timeout() RETURNS interval "
            "LANGUAGE sql AS $$ SELECT interval '1 second' $$",
            "DROP EXTENSION plpgsql CASCADE",
            "SET ROLE postgres",
            f"SET ROLE {WRITER}",
            "SET SESSION AUTHORIZATION postgres",
            "SELECT set_config('role', 'postgres', false)",
            f"GRANT {WRITER} TO CURRENT_USER",
            f"ALTER ROLE {ANALYST} SUPERUSER",
            f"SELECT pg_terminate_backend({owner_pid})",
            f"SELECT pg_cancel_backend({owner_pid})",
            "SELECT lo_import('/etc/hostname')",
            "SELECT pg_read_file('/etc/hostname')",
            "COPY (SELECT 1) TO PROGRAM 'true'",
            "SELECT pg_reload_conf()",
            # The queue: procrastinate's functions (EXECUTE is the writer's alone) and
            # signdb's attempt fence (it locks the run row, which takes UPDATE).
            f"SELECT signdb.check_attempt({run_id}, 0)",
            "SELECT procrastinate.procrastinate_register_worker_v1()",
            "SELECT procrastinate.procrastinate_fetch_job_v2(NULL, NULL)",
            "SELECT procrastinate.procrastinate_cancel_job_v1(1, true, false)",
            "SELECT procrastinate.procrastinate_retry_job_v2(1, now(), NULL, NULL, NULL)",
            "SELECT procrastinate.procrastinate_prune_stalled_workers_v1(0)",
            "CREATE TABLE procrastinate.pwned (x int)",
            "DROP SCHEMA procrastinate CASCADE",
            "ALTER SYSTEM SET work_mem = '1GB'",
        ]

        as_analyst = _conninfo(url, username=analyst_login)
        with psycopg.connect(as_analyst, autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == analyst_login
            failures = {}
            for statement in attempts:
                shown = statement if isinstance(statement, str) else statement.as_string(conn)
                try:
                    if "FOR UPDATE" in shown or "STDIN" in shown:
                        with conn.transaction():  # both need a transaction block
                            conn.execute(statement)
                    else:
                        conn.execute(statement)
                except psycopg.Error as e:
                    if e.sqlstate != INSUFFICIENT_PRIVILEGE:
                        failures[shown] = f"failed for another reason: {e.sqlstate} {e}"
                else:
                    failures[shown] = "succeeded"
            assert not failures, failures

            # LOCK needs a transaction block; anything above ACCESS SHARE needs write rights.
            for t in tables:
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                        sql.Identifier(*t)))  # fmt: skip
            # A GRANT without grant option only warns; it must not take effect.
            conn.execute("GRANT INSERT ON signdb.runs TO PUBLIC")
            assert not conn.execute(
                "SELECT has_table_privilege('signdb.runs', 'INSERT')"
            ).fetchone()[0]
            # RESET ROLE keeps the analyst an analyst.
            conn.execute("RESET ROLE")
            assert conn.execute("SELECT current_user").fetchone()[0] == analyst_login
            # No signdb function can run with its owner's rights or write. Trigger
            # functions cannot be called, only fired by writes the analyst cannot make.
            risky = conn.execute(
                "SELECT p.proname, p.prosecdef, p.provolatile FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'signdb' "
                "AND (p.prosecdef OR p.provolatile = 'v') "
                "AND p.prorettype <> 'trigger'::regtype "
                # Volatile for its row lock, which the analyst may not take (tried above).
                "AND p.proname <> 'check_attempt'"
            ).fetchall()
            assert not risky, f"signdb functions that may write or escalate: {risky}"

            # Reading works: every table and view but the server's token hashes, the SQL
            # function, and the data is there.
            private = {("signdb", t) for t in PRIVATE_TABLES}
            assert private <= set(tables)
            for name in tables + views:
                select = sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(*name))
                if name in private:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(select)
                    continue
                conn.execute(select).fetchall()
            ((state, sweep_run),) = conn.execute(
                "SELECT state, run_status FROM signdb.sweep_trials WHERE sweep = 's'"
            ).fetchall()
            assert (state, sweep_run) == ("COMPLETE", "succeeded")
            ((status, f1),) = conn.execute(
                "SELECT status, test_f1 FROM signdb.run_summary WHERE run_id = %s", [run_id]
            ).fetchall()
            assert status == "succeeded" and f1 is not None
            ((p, stored),) = conn.execute(
                "SELECT signdb.predict_proba(run_id, image_id), probability "
                "FROM signdb.predictions WHERE run_id = %s ORDER BY image_id LIMIT 1",
                [run_id],
            ).fetchall()
            assert p == pytest.approx(stored, abs=1e-6)

        assert _snapshot(owner, tables) == before, "an analyst's attempt changed data"
        assert _objects(owner) == (tables, views, sequences), "an analyst changed the schema"


def _first_column(conn: psycopg.Connection, table: Name) -> str:
    ((column,),) = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s AND is_generated = 'NEVER' "
        "AND identity_generation IS DISTINCT FROM 'ALWAYS' ORDER BY ordinal_position LIMIT 1",
        list(table),
    ).fetchall()
    return column
