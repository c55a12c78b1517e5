"""one-vs-rest curves as one row of arrays per class, not a row per point

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:40:00.000000

0009 stored a row per curve point: a 10-class split of 309 images has about
3,000, and every row paid its foreign-key check on runs, 20 of the 35 ms an
evaluation spends writing (a sweep writes two per run). signdb.curves holds a
class's thresholds, true and false positives as arrays beside its positive and
negative totals; class_curves unnests them and keeps its columns, names, types
and order. Existing curves are carried over, and back on downgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPLIT_CHECK = "split IN ('train', 'val', 'test', 'all')"

CLASS_CURVES = """
    CREATE OR REPLACE VIEW signdb.class_curves AS
    SELECT v.run_id, v.split, v.label, c.name AS class_name, (p.point - 1)::integer AS point,
           p.threshold, p.tp, p.fp, v.negatives - p.fp AS tn, v.positives - p.tp AS fn,
           p.fp::double precision / NULLIF(v.negatives, 0) AS fpr,
           p.tp::double precision / NULLIF(v.positives, 0) AS tpr,
           p.tp::double precision / NULLIF(v.positives, 0) AS recall,
           p.tp::double precision / NULLIF(p.tp + p.fp, 0) AS precision
    FROM signdb.curves v
    CROSS JOIN LATERAL unnest(v.thresholds, v.tp, v.fp)
        WITH ORDINALITY AS p(threshold, tp, fp, point)
    JOIN signdb.runs r ON r.id = v.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = v.label"""

# 0009's definition, restored by the downgrade.
CLASS_CURVES_0009 = """
    CREATE OR REPLACE VIEW signdb.class_curves AS
    SELECT p.run_id, p.split, p.label, c.name AS class_name, p.point, p.threshold,
           p.tp, p.fp, p.tn, p.fn, p.fpr, p.tpr, p.tpr AS recall, p.precision
    FROM signdb.curve_points p
    JOIN signdb.runs r ON r.id = p.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = p.label"""


def _rate(numerator: str, denominator: str) -> sa.Computed:
    return sa.Computed(f"({numerator})::double precision / NULLIF({denominator}, 0)", persisted=True)


def upgrade() -> None:
    op.create_table(
        "curves",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("thresholds", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.Column("tp", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("fp", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.CheckConstraint(SPLIT_CHECK, name=op.f("ck_curves_split")),
        sa.CheckConstraint(
            "positives >= 0 AND negatives >= 0", name=op.f("ck_curves_counts_nonnegative")
        ),
        sa.CheckConstraint(
            "cardinality(tp) = cardinality(thresholds) "
            "AND cardinality(fp) = cardinality(thresholds)",
            name=op.f("ck_curves_points"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["signdb.runs.id"], name=op.f("fk_curves_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "split", "label", name=op.f("pk_curves")),
        schema="signdb",
    )
    op.execute(
        "INSERT INTO signdb.curves "
        "SELECT run_id, split, label, max(tp + fn), max(fp + tn), "
        "array_agg(threshold ORDER BY point), array_agg(tp ORDER BY point), "
        "array_agg(fp ORDER BY point) "
        "FROM signdb.curve_points GROUP BY run_id, split, label"
    )
    op.execute(CLASS_CURVES)
    op.drop_table("curve_points", schema="signdb")


def downgrade() -> None:
    op.create_table(
        "curve_points",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("point", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("tp", sa.Integer(), nullable=False),
        sa.Column("fp", sa.Integer(), nullable=False),
        sa.Column("tn", sa.Integer(), nullable=False),
        sa.Column("fn", sa.Integer(), nullable=False),
        sa.Column("tpr", sa.Double(), _rate("tp", "tp + fn"), nullable=True),
        sa.Column("fpr", sa.Double(), _rate("fp", "fp + tn"), nullable=True),
        sa.Column("precision", sa.Double(), _rate("tp", "tp + fp"), nullable=True),
        sa.CheckConstraint(
            "tp >= 0 AND fp >= 0 AND tn >= 0 AND fn >= 0",
            name=op.f("ck_curve_points_counts_nonnegative"),
        ),
        sa.CheckConstraint(SPLIT_CHECK, name=op.f("ck_curve_points_split")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_curve_points_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "split", "label", "point", name=op.f("pk_curve_points")),
        schema="signdb",
    )
    op.execute(
        "INSERT INTO signdb.curve_points (run_id, split, label, point, threshold, tp, fp, tn, fn) "
        "SELECT run_id, split, label, point, threshold, tp, fp, tn, fn FROM signdb.class_curves"
    )
    op.execute(CLASS_CURVES_0009)
    op.drop_table("curves", schema="signdb")
