"""run spec: trainer settings leave hyperparams for runs.trainer; runs.engine

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000

runs.hyperparams held both what a model's constructor takes and three settings
of the trainer (cache, eval_every, checkpoint_every), which every reader had to
strip out again. The trainer's settings now live in runs.trainer; existing
values move there. runs.engine records which engine trained the run (numpy
for every existing run).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRAINER_KEYS = ("cache", "eval_every", "checkpoint_every")


def upgrade() -> None:
    op.add_column(
        "runs",
        sa.Column(
            "trainer",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        schema="signdb",
    )
    op.add_column(
        "runs",
        sa.Column("engine", sa.Text(), server_default="numpy", nullable=False),
        schema="signdb",
    )
    op.create_check_constraint(
        op.f("ck_runs_engine"), "runs", "engine IN ('numpy', 'torch', 'external')", schema="signdb"
    )
    op.execute(
        "UPDATE signdb.runs SET "
        "trainer = jsonb_strip_nulls(jsonb_build_object("
        "'cache', hyperparams -> 'cache', "
        "'eval_every', hyperparams -> 'eval_every', "
        "'checkpoint_every', hyperparams -> 'checkpoint_every')), "
        "hyperparams = hyperparams - 'cache' - 'eval_every' - 'checkpoint_every' "
        "WHERE hyperparams ?| array['cache', 'eval_every', 'checkpoint_every']"
    )


def downgrade() -> None:
    op.execute("UPDATE signdb.runs SET hyperparams = hyperparams || trainer")
    op.drop_constraint(op.f("ck_runs_engine"), "runs", schema="signdb", type_="check")
    op.drop_column("runs", "engine", schema="signdb")
    op.drop_column("runs", "trainer", schema="signdb")
