"""the run queue: procrastinate's tables in schema procrastinate, queued runs' columns, cancelled

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 10:00:00.000000

Queued runs are jobs of procrastinate (a PostgreSQL task queue: LISTEN/NOTIFY,
queues, priorities, locks, worker heartbeats). Its objects live in their own
schema, ``procrastinate``, created here from the schema file of the installed
procrastinate, so the queue is part of ``signdb db upgrade``, of downgrade and
of ``db check``. The revision refuses a procrastinate whose schema is not the
one it was written for (3.10: its newest migration is PROCRASTINATE_SCHEMA); a
newer procrastinate needs a new revision that applies its migrations.

``runs`` gains the queue, the priority, the job id of the current attempt, the
attempt number (the fencing token: ``signdb.check_attempt`` refuses a write
from a superseded attempt) and the worker's host and pid; ``status`` gains
``cancelled``. Downgrading drops schema procrastinate and turns cancelled runs
into interrupted ones (the old statuses).
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_SCHEMA = "procrastinate"
#: The newest migration shipped with the procrastinate this schema is written for.
PROCRASTINATE_SCHEMA = "03.04.00_50_post_add_retry_failed_job_procedure.sql"

OLD_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')"
NEW_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'cancelled')"

RUN_COLUMNS = (
    ("queue", sa.Text),
    ("priority", sa.Integer),
    ("job_id", sa.BigInteger),
    ("worker_host", sa.Text),
    ("worker_pid", sa.Integer),
)

CHECK_ATTEMPT = """
    CREATE FUNCTION signdb.check_attempt(p_run bigint, p_attempt integer) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        current_attempt integer;
    BEGIN
        -- KEY SHARE: the attempt's own updates of the row (heartbeat, progress) go on;
        -- a re-queue (SELECT ... FOR UPDATE) waits for this transaction, and the
        -- attempt's transactions after it see the new attempt number.
        SELECT attempt INTO current_attempt FROM signdb.runs WHERE id = p_run FOR KEY SHARE;
        IF current_attempt IS DISTINCT FROM p_attempt THEN
            RAISE EXCEPTION 'run % attempt % was superseded by attempt %',
                p_run, p_attempt, current_attempt
                USING ERRCODE = 'SDB01',
                      HINT = 'another worker took the run over after this one lost its heartbeat';
        END IF;
    END $$"""


def _procrastinate_schema() -> str:
    try:
        from procrastinate.schema import SchemaManager
    except ImportError as e:  # pragma: no cover - a dependency of signdb
        raise RuntimeError("the run queue needs procrastinate: pip install 'procrastinate>=3.10,<3.11'") from e
    newest = max(p.name for p in Path(SchemaManager.get_migrations_path()).glob("*.sql"))
    if newest != PROCRASTINATE_SCHEMA:
        raise RuntimeError(
            f"revision 0016 creates procrastinate's schema up to {PROCRASTINATE_SCHEMA}, but the "
            f"installed procrastinate's newest migration is {newest}; install the procrastinate "
            "version signdb pins (pip install 'procrastinate>=3.10,<3.11')"
        )
    return SchemaManager.get_schema()


def upgrade() -> None:
    schema_sql = _procrastinate_schema()
    bind = op.get_bind()
    op.execute(f"CREATE SCHEMA {QUEUE_SCHEMA}")
    # procrastinate's file names no schema: it creates its objects in the first one of
    # the search path, and its functions find their tables through the caller's path.
    op.execute(f"SET LOCAL search_path TO {QUEUE_SCHEMA}")
    bind.exec_driver_sql(schema_sql.replace("%", "%%"))  # the driver reads % as a placeholder
    op.execute("SET LOCAL search_path TO DEFAULT")

    for name, type_ in RUN_COLUMNS:
        op.add_column("runs", sa.Column(name, type_(), nullable=True), schema="signdb")
    op.add_column(
        "runs",
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        schema="signdb",
    )
    op.drop_constraint(op.f("ck_runs_status"), "runs", schema="signdb", type_="check")
    op.create_check_constraint(op.f("ck_runs_status"), "runs", NEW_STATUSES, schema="signdb")
    op.execute(CHECK_ATTEMPT)


def downgrade() -> None:
    op.execute("DROP FUNCTION signdb.check_attempt(bigint, integer)")
    op.execute(
        "UPDATE signdb.runs SET status = 'interrupted', "
        "error = coalesce(error, 'cancelled') WHERE status = 'cancelled'"
    )
    op.drop_constraint(op.f("ck_runs_status"), "runs", schema="signdb", type_="check")
    op.create_check_constraint(op.f("ck_runs_status"), "runs", OLD_STATUSES, schema="signdb")
    for name, _ in (*RUN_COLUMNS, ("attempt", sa.Integer)):
        op.drop_column("runs", name, schema="signdb")
    op.execute(f"DROP SCHEMA {QUEUE_SCHEMA} CASCADE")
