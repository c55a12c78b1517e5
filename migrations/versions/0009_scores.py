"""evaluation a statistician would sign: probability vectors, scores with intervals, curves, calibration

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:50:00.000000

predictions.probabilities keeps each image's whole probability vector in the
run's classes order (NULL for rows written before this revision; evaluating
the run again fills them in). An evaluated split also gets its scores with
bootstrap intervals (score_values, view run_scores), each class's one-vs-rest
ROC AUC and average precision (class_score_values, view class_scores), the
threshold-free one-vs-rest curve points (curve_points, view class_curves) and
its reliability bins (calibration_bins, view calibration). run_summary and the
leaderboard gain the test accuracy's interval.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPLIT_CHECK = "split IN ('train', 'val', 'test', 'all')"

RUN_SCORES = """
    CREATE VIEW signdb.run_scores AS
    SELECT s.run_id, s.split, s.metric, s.value, s.ci_low, s.ci_high,
           d.name AS dataset, r.model
    FROM signdb.score_values s
    JOIN signdb.runs r ON r.id = s.run_id
    JOIN signdb.datasets d ON d.id = r.dataset_id"""

CLASS_SCORES = """
    CREATE VIEW signdb.class_scores AS
    SELECT v.run_id, v.split, v.label, c.name AS class_name, v.metric, v.value
    FROM signdb.class_score_values v
    JOIN signdb.runs r ON r.id = v.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = v.label"""

CLASS_CURVES = """
    CREATE VIEW signdb.class_curves AS
    SELECT p.run_id, p.split, p.label, c.name AS class_name, p.point, p.threshold,
           p.tp, p.fp, p.tn, p.fn, p.fpr, p.tpr, p.tpr AS recall, p.precision
    FROM signdb.curve_points p
    JOIN signdb.runs r ON r.id = p.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = p.label"""

CALIBRATION = """
    CREATE VIEW signdb.calibration AS
    SELECT b.run_id, b.split, b.bin, b.bin / 15.0::double precision AS confidence_low,
           (b.bin + 1) / 15.0::double precision AS confidence_high, b.images,
           b.mean_confidence, b.accuracy
    FROM signdb.calibration_bins b"""

# run_summary and leaderboard: the 0006 definitions with the test accuracy's
# bootstrap interval appended (CREATE OR REPLACE may only add columns at the end).
RUN_SUMMARY_BODY = """
    SELECT
        r.id AS run_id,
        r.name,
        d.name AS dataset,
        r.dataset_id,
        r.model,
        r.classes,
        r.hyperparams,
        r.seed,
        r.test_fraction,
        signdb.effective_status(r.status, r.heartbeat_at) AS status,
        r.error,
        r.started_at,
        r.finished_at,
        r.finished_at - r.started_at AS duration,
        r.steps_done,
        r.total_steps,
        r.train_size,
        r.test_size,
        r.dataset_fingerprint,
        r.code_version,
        (SELECT m.value FROM signdb.run_metrics m
          WHERE m.run_id = r.id AND m.name = 'cost' ORDER BY m.step DESC LIMIT 1) AS final_cost,
        r.train_accuracy,
        r.test_accuracy,
        (SELECT max(m.value) FROM signdb.run_metrics m
          WHERE m.run_id = r.id AND m.name = 'test_accuracy') AS best_test_accuracy,
        r.test_precision,
        r.test_recall,
        r.test_f1,
        r.engine,
        r.val_fraction,
        r.split,
        r.val_size,
        r.val_accuracy,
        (SELECT max(m.value) FROM signdb.run_metrics m
          WHERE m.run_id = r.id AND m.name = 'val_accuracy') AS best_val_accuracy,
        (SELECT array_agg(c.name ORDER BY c.label) FROM signdb.classes c
          WHERE c.dataset_id = r.dataset_id AND c.label = ANY(r.classes)) AS class_names"""

RUN_SUMMARY_FROM = """
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id"""

RUN_SUMMARY = (
    "\n    CREATE OR REPLACE VIEW signdb.run_summary AS"  # noqa: S608 - constant SQL
    + RUN_SUMMARY_BODY
    + """,
        (SELECT v.ci_low FROM signdb.score_values v
          WHERE v.run_id = r.id AND v.split = 'test' AND v.metric = 'accuracy')
          AS test_accuracy_low,
        (SELECT v.ci_high FROM signdb.score_values v
          WHERE v.run_id = r.id AND v.split = 'test' AND v.metric = 'accuracy')
          AS test_accuracy_high"""
    + RUN_SUMMARY_FROM
)
RUN_SUMMARY_0006 = "\n    CREATE VIEW signdb.run_summary AS" + RUN_SUMMARY_BODY + RUN_SUMMARY_FROM

LEADERBOARD_BODY = """
    SELECT
        rank() OVER (PARTITION BY s.dataset_id, s.classes
                     ORDER BY s.test_f1 DESC, s.test_accuracy DESC NULLS LAST, s.run_id) AS rank,
        s.dataset,
        s.classes,
        s.run_id,
        s.name,
        s.model,
        s.hyperparams,
        s.seed,
        s.test_accuracy,
        s.test_precision,
        s.test_recall,
        s.test_f1,
        s.finished_at"""
LEADERBOARD_WHERE = """
    FROM signdb.run_summary s
    WHERE s.status = 'succeeded' AND s.test_f1 IS NOT NULL"""
LEADERBOARD = (
    "\n    CREATE OR REPLACE VIEW signdb.leaderboard AS"
    + LEADERBOARD_BODY
    + """,
        s.test_accuracy_low,
        s.test_accuracy_high"""
    + LEADERBOARD_WHERE
)
LEADERBOARD_0006 = "\n    CREATE VIEW signdb.leaderboard AS" + LEADERBOARD_BODY + LEADERBOARD_WHERE


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["signdb.runs.id"], name=op.f(f"fk_{table}_run_id_runs"), ondelete="CASCADE"
    )


def _split_check(table: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(SPLIT_CHECK, name=op.f(f"ck_{table}_split"))


def _rate(numerator: str, denominator: str) -> sa.Computed:
    return sa.Computed(f"({numerator})::double precision / NULLIF({denominator}, 0)", persisted=True)


def upgrade() -> None:
    op.add_column(
        "predictions",
        sa.Column("probabilities", postgresql.ARRAY(sa.REAL()), nullable=True),
        schema="signdb",
    )
    op.create_table(
        "score_values",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "ci_low IS NULL OR ci_low <= ci_high", name=op.f("ck_score_values_interval")
        ),
        _split_check("score_values"),
        _run_fk("score_values"),
        sa.PrimaryKeyConstraint("run_id", "split", "metric", name=op.f("pk_score_values")),
        schema="signdb",
    )
    op.create_table(
        "class_score_values",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        _split_check("class_score_values"),
        _run_fk("class_score_values"),
        sa.PrimaryKeyConstraint(
            "run_id", "split", "label", "metric", name=op.f("pk_class_score_values")
        ),
        schema="signdb",
    )
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
        _split_check("curve_points"),
        _run_fk("curve_points"),
        sa.PrimaryKeyConstraint("run_id", "split", "label", "point", name=op.f("pk_curve_points")),
        schema="signdb",
    )
    op.create_table(
        "calibration_bins",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("bin", sa.SmallInteger(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("mean_confidence", sa.Double(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=False),
        sa.CheckConstraint("bin >= 0 AND images > 0", name=op.f("ck_calibration_bins_bin")),
        _split_check("calibration_bins"),
        _run_fk("calibration_bins"),
        sa.PrimaryKeyConstraint("run_id", "split", "bin", name=op.f("pk_calibration_bins")),
        schema="signdb",
    )
    for view in (RUN_SCORES, CLASS_SCORES, CLASS_CURVES, CALIBRATION, RUN_SUMMARY, LEADERBOARD):
        op.execute(view)


def downgrade() -> None:
    for view in ("leaderboard", "run_summary", "calibration", "class_curves", "class_scores"):
        op.execute(f"DROP VIEW signdb.{view}")
    op.execute("DROP VIEW signdb.run_scores")
    op.execute(RUN_SUMMARY_0006)
    op.execute(LEADERBOARD_0006)
    for table in ("calibration_bins", "curve_points", "class_score_values", "score_values"):
        op.drop_table(table, schema="signdb")
    op.drop_column("predictions", "probabilities", schema="signdb")
