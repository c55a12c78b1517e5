"""runs.world_size and runs.launch_key: one run trained by several processes

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 09:00:00.000000

A run trained with torch.distributed records how many processes trained it
(``world_size``, 1 for every run before this revision and every run of one
process). ``launch_key`` names the launch that created a distributed run
(torchrun's run id, or its agent), so a rank 0 that torchrun restarts finds
and continues its run instead of starting a second one: unique, NULL for
every other run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "runs",
        sa.Column("world_size", sa.Integer(), server_default="1", nullable=False),
        schema="signdb",
    )
    op.add_column("runs", sa.Column("launch_key", sa.Text(), nullable=True), schema="signdb")
    op.create_check_constraint(
        op.f("ck_runs_world_size"), "runs", "world_size >= 1", schema="signdb"
    )
    op.create_unique_constraint(
        op.f("uq_runs_launch_key"), "runs", ["launch_key"], schema="signdb"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_runs_launch_key"), "runs", schema="signdb", type_="unique")
    op.drop_constraint(op.f("ck_runs_world_size"), "runs", schema="signdb", type_="check")
    op.drop_column("runs", "launch_key", schema="signdb")
    op.drop_column("runs", "world_size", schema="signdb")
