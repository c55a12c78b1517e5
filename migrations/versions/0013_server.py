"""signdb serve: API tokens, metric buckets for charts, TEMP for the writer only

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 10:00:00.000000

- ``api_tokens``: the server's tokens, by name and role (viewer or editor).
  Only the sha256 of a token is stored; the token itself is printed once.
  Neither group role may read the table (the server checks tokens on its own
  login), so an analyst cannot list who holds access.
- ``metric_buckets``: each metric's points summarised per run in buckets of 64
  and of 4,096 steps (count, first and last step, minimum and maximum with
  their steps), written in the same transaction as the points. A chart of a
  million-point series reads ~16,000 bucket rows instead of the million
  points (1.2 s for the points' min/max aggregate on one 2-core machine).
  A flush that splits a bucket writes a partial row; readers combine them.
  Existing points are summarised here.
- A BRIN index on ``run_metrics.recorded_at``: live views ask for the points
  recorded since their last look, and the table is appended in time order.
- TEMP on the database is revoked from PUBLIC and granted to
  ``signdb_writer``: the analyst role can create nothing at all, not even a
  temporary table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDTHS = (64, 4096)

BACKFILL = """
    INSERT INTO signdb.metric_buckets
        (run_id, name, width, bucket, points, first_step, last_step,
         min_value, min_step, max_value, max_step)
    SELECT m.run_id, m.name, w.width, m.step / w.width, count(*), min(m.step), max(m.step),
           min(m.value), (array_agg(m.step ORDER BY m.value, m.step))[1],
           max(m.value), (array_agg(m.step ORDER BY m.value DESC, m.step))[1]
    FROM signdb.run_metrics m
    JOIN signdb.runs r ON r.id = m.run_id
    CROSS JOIN (VALUES (64), (4096)) AS w(width)
    GROUP BY m.run_id, m.name, w.width, m.step / w.width"""

TEMP = """
    DO $$ BEGIN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO signdb_writer', current_database());
    END $$"""

TEMP_BACK = """
    DO $$ BEGIN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM signdb_writer', current_database());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
    END $$"""


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(collation="C"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_api_tokens_name_length")),
        sa.CheckConstraint("role IN ('viewer', 'editor')", name=op.f("ck_api_tokens_role")),
        sa.CheckConstraint(
            "length(token_hash) = 64 AND token_hash !~ '[^0-9a-f]'",
            name=op.f("ck_api_tokens_token_hash_hex"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        schema="signdb",
    )
    op.create_table(
        "metric_buckets",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("min_value", sa.Double(), nullable=False),
        sa.Column("min_step", sa.Integer(), nullable=False),
        sa.Column("max_value", sa.Double(), nullable=False),
        sa.Column("max_step", sa.Integer(), nullable=False),
        sa.CheckConstraint("points > 0", name=op.f("ck_metric_buckets_points")),
        sa.CheckConstraint("width IN (64, 4096)", name=op.f("ck_metric_buckets_width")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_metric_buckets_run_id_runs"),
            ondelete="CASCADE",
        ),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_metric_buckets_run_id_name_width_bucket"),
        "metric_buckets",
        ["run_id", "name", "width", "bucket"],
        schema="signdb",
    )
    op.execute(BACKFILL)
    op.create_index(
        op.f("ix_run_metrics_recorded_at"),
        "run_metrics",
        ["recorded_at"],
        schema="signdb",
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 8, "autosummarize": "on"},
    )
    op.execute(TEMP)


def downgrade() -> None:
    op.execute(TEMP_BACK)
    op.drop_index(op.f("ix_run_metrics_recorded_at"), "run_metrics", schema="signdb")
    op.drop_table("metric_buckets", schema="signdb")
    op.drop_table("api_tokens", schema="signdb")
