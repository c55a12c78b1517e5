"""weights keep any tensor losslessly: weights.dtype and weights.raw

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:00:00.000000

weights.data stays every tensor's float32 view, in row-major order, for
analysts and signdb.predict_proba. A tensor of another type (a batch-norm
counter in int64, float64 parameters, a bool mask) also keeps its exact
little-endian bytes in weights.raw, with its numpy type in weights.dtype, so a
PyTorch state_dict comes back bit for bit.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "weights",
        sa.Column("dtype", sa.Text(), server_default="float32", nullable=False),
        schema="signdb",
    )
    op.add_column("weights", sa.Column("raw", sa.LargeBinary(), nullable=True), schema="signdb")
    op.create_check_constraint(
        op.f("ck_weights_raw_dtype"),
        "weights",
        "(dtype = 'float32') = (raw IS NULL)",
        schema="signdb",
    )
    op.execute("ALTER TABLE signdb.weights ALTER COLUMN raw SET STORAGE EXTERNAL")


def downgrade() -> None:
    # Older code reads weights.data only: the float32 views stay, the exact bytes go.
    op.drop_constraint(op.f("ck_weights_raw_dtype"), "weights", schema="signdb", type_="check")
    op.drop_column("weights", "raw", schema="signdb")
    op.drop_column("weights", "dtype", schema="signdb")
