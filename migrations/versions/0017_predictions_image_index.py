"""an index on predictions.image_id, so deleting a dataset's images stays fast

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 04:00:00.000000

Deleting images (``signdb datasets delete``) runs the cascade of
predictions.image_id once per image, and without an index each of those is a
scan of the whole predictions table, whoever's rows they are. Measured on
PostgreSQL 15: deleting a 2,062-image dataset beside 51,600 predictions of
another dataset took 4.34 s without it and 0.01 s with it; the cost grows with
images x predictions. run_images already has its index on image_id (0001).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_predictions_image_id", "predictions", ["image_id"], schema="signdb"
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_image_id", "predictions", schema="signdb")
