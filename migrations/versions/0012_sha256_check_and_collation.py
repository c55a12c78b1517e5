"""images.sha256: bytewise collation and a check without a bounded repeat

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:45:00.000000

A load's server time per image went to its row checks and to the unique
(dataset_id, sha256) index more than to the pixels: the check
``sha256 ~ '^[0-9a-f]{64}$'`` runs the regex engine's bounded repeat on every row,
and the index compared hex digests with the database's collation. Hex digests
sort the same bytewise as in any locale (digits, then a-f), so COLLATE "C"
changes no order that signdb or a query sees, only the cost of each comparison;
the check accepts exactly the same strings. The unique index is rebuilt; the
table is not rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_images_sha256_hex"


def upgrade() -> None:
    op.drop_constraint(op.f(CHECK), "images", schema="signdb", type_="check")
    op.execute('ALTER TABLE signdb.images ALTER COLUMN sha256 TYPE text COLLATE "C"')
    op.create_check_constraint(
        op.f(CHECK), "images", "length(sha256) = 64 AND sha256 !~ '[^0-9a-f]'", schema="signdb"
    )


def downgrade() -> None:
    op.drop_constraint(op.f(CHECK), "images", schema="signdb", type_="check")
    op.execute('ALTER TABLE signdb.images ALTER COLUMN sha256 TYPE text COLLATE "default"')
    op.create_check_constraint(op.f(CHECK), "images", "sha256 ~ '^[0-9a-f]{64}$'", schema="signdb")
