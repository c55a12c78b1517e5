"""initial schema: tables, split function, analyst views, roles

Revision ID: 0001
Revises:
Create Date: 2026-11-27 16:00:50.138612
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from signdb.db import roles

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("preprocessing", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("height", sa.SmallInteger(), nullable=False),
        sa.Column("width", sa.SmallInteger(), nullable=False),
        sa.Column("channels", sa.SmallInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("channels IN (1, 3)", name=op.f("ck_datasets_channels")),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_datasets_name_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
        schema="signdb",
    )
    op.create_table(
        "images",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("pixels", sa.LargeBinary(), nullable=False),
        sa.Column("height", sa.SmallInteger(), nullable=False),
        sa.Column("width", sa.SmallInteger(), nullable=False),
        sa.Column("channels", sa.SmallInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_images_sha256_hex")),
        sa.CheckConstraint("label >= 0", name=op.f("ck_images_label_nonnegative")),
        sa.CheckConstraint(
            "octet_length(pixels) = height * width * channels", name=op.f("ck_images_pixels_shape")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["signdb.datasets.id"],
            name=op.f("fk_images_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("dataset_id", "sha256", name=op.f("uq_images_dataset_id_sha256")),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_images_dataset_id_label"),
        "images",
        ["dataset_id", "label"],
        unique=False,
        schema="signdb",
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("classes", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("hyperparams", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("test_fraction", sa.Double(), nullable=False),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("dataset_fingerprint", sa.Text(), nullable=True),
        sa.Column("code_version", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("train_size", sa.Integer(), nullable=True),
        sa.Column("test_size", sa.Integer(), nullable=True),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("steps_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("train_accuracy", sa.Double(), nullable=True),
        sa.Column("test_accuracy", sa.Double(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')",
            name=op.f("ck_runs_status"),
        ),
        sa.CheckConstraint("cardinality(classes) >= 2", name=op.f("ck_runs_two_classes")),
        sa.CheckConstraint(
            "test_fraction > 0 AND test_fraction < 1", name=op.f("ck_runs_test_fraction")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["signdb.datasets.id"], name=op.f("fk_runs_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_runs_dataset_id"), "runs", ["dataset_id"], unique=False, schema="signdb"
    )
    op.create_index(op.f("ix_runs_status"), "runs", ["status"], unique=False, schema="signdb")
    op.create_table(
        "evaluations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("positive_class", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("tp", sa.BigInteger(), nullable=False),
        sa.Column("fp", sa.BigInteger(), nullable=False),
        sa.Column("tn", sa.BigInteger(), nullable=False),
        sa.Column("fn", sa.BigInteger(), nullable=False),
        sa.Column(
            "accuracy",
            sa.Double(),
            sa.Computed(
                "(tp + tn)::double precision / NULLIF(tp + fp + tn + fn, 0)", persisted=True
            ),
            nullable=True,
        ),
        sa.Column(
            "precision",
            sa.Double(),
            sa.Computed("(tp)::double precision / NULLIF(tp + fp, 0)", persisted=True),
            nullable=True,
        ),
        sa.Column(
            "recall",
            sa.Double(),
            sa.Computed("(tp)::double precision / NULLIF(tp + fn, 0)", persisted=True),
            nullable=True,
        ),
        sa.Column(
            "f1",
            sa.Double(),
            sa.Computed("(2 * tp)::double precision / NULLIF(2 * tp + fp + fn, 0)", persisted=True),
            nullable=True,
        ),
        sa.Column(
            "evaluated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("split IN ('train', 'test', 'all')", name=op.f("ck_evaluations_split")),
        sa.CheckConstraint(
            "threshold IS NULL OR threshold BETWEEN 0 AND 1",
            name=op.f("ck_evaluations_threshold_range"),
        ),
        sa.CheckConstraint(
            "tp >= 0 AND fp >= 0 AND tn >= 0 AND fn >= 0",
            name=op.f("ck_evaluations_counts_nonnegative"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_evaluations_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint(
            "run_id",
            "split",
            "positive_class",
            "threshold",
            name=op.f("uq_evaluations_run_id_split_positive_class_threshold"),
            postgresql_nulls_not_distinct=True,
        ),
        schema="signdb",
    )
    op.create_table(
        "predictions",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.CheckConstraint("split IN ('train', 'test')", name=op.f("ck_predictions_split")),
        sa.CheckConstraint(
            "probability BETWEEN 0 AND 1", name=op.f("ck_predictions_probability_range")
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["signdb.images.id"],
            name=op.f("fk_predictions_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_predictions_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "image_id", name=op.f("pk_predictions")),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_predictions_run_id_split"),
        "predictions",
        ["run_id", "split"],
        unique=False,
        schema="signdb",
    )
    op.create_table(
        "run_images",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.CheckConstraint("split IN ('train', 'test')", name=op.f("ck_run_images_split")),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["signdb.images.id"],
            name=op.f("fk_run_images_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_run_images_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "image_id", name=op.f("pk_run_images")),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_run_images_image_id"), "run_images", ["image_id"], unique=False, schema="signdb"
    )
    op.create_table(
        "run_metrics",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_run_metrics_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "name", "step", name=op.f("pk_run_metrics")),
        schema="signdb",
    )
    op.create_table(
        "weights",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("tensor", sa.Text(), nullable=False),
        sa.Column("shape", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("data", sa.ARRAY(sa.REAL()), nullable=False),
        sa.Column("final", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["signdb.runs.id"], name=op.f("fk_weights_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "step", "tensor", name=op.f("pk_weights")),
        schema="signdb",
    )

    for statement in FUNCTIONS + VIEWS:
        op.execute(statement)
    for statement in roles.create_roles_sql() + roles.grant_sql():
        op.execute(statement)


def downgrade() -> None:
    for statement in roles.revoke_sql():
        op.execute(statement)
    for view in ("leaderboard", "run_summary", "learning_curves", "confusion"):
        op.execute(f"DROP VIEW IF EXISTS signdb.{view}")
    for function in (
        "effective_status(text, timestamptz)",
        "heartbeat_timeout()",
        "split_of(text, integer, double precision)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS signdb.{function}")
    op.drop_table("weights", schema="signdb")
    op.drop_table("run_metrics", schema="signdb")
    op.drop_index(op.f("ix_run_images_image_id"), table_name="run_images", schema="signdb")
    op.drop_table("run_images", schema="signdb")
    op.drop_index(op.f("ix_predictions_run_id_split"), table_name="predictions", schema="signdb")
    op.drop_table("predictions", schema="signdb")
    op.drop_table("evaluations", schema="signdb")
    op.drop_index(op.f("ix_runs_status"), table_name="runs", schema="signdb")
    op.drop_index(op.f("ix_runs_dataset_id"), table_name="runs", schema="signdb")
    op.drop_table("runs", schema="signdb")
    op.drop_index(op.f("ix_images_dataset_id_label"), table_name="images", schema="signdb")
    op.drop_table("images", schema="signdb")
    op.drop_table("datasets", schema="signdb")
    for statement in roles.drop_unused_roles_sql():
        op.execute(statement)


FUNCTIONS = [
    # Same rule as signdb.data.splits.split_value: the first 52 bits of
    # sha256("<seed>:<image sha256>") as a fraction of 2**52 (exact in a double).
    """
    CREATE FUNCTION signdb.split_of(image_sha256 text, seed integer, test_fraction double precision)
    RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT CASE
            WHEN ('x' || substr(encode(sha256(convert_to(seed::text || ':' || image_sha256, 'UTF8')),
                                       'hex'), 1, 13))::bit(52)::bigint::double precision
                 / 4503599627370496::double precision < test_fraction
            THEN 'test' ELSE 'train' END
    $$""",
    # A run whose heartbeat is older than this is reported as interrupted.
    # Sessions may tune it: SET signdb.heartbeat_timeout = '10 seconds'.
    """
    CREATE FUNCTION signdb.heartbeat_timeout() RETURNS interval
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT coalesce(nullif(current_setting('signdb.heartbeat_timeout', true), ''),
                        '60 seconds')::interval
    $$""",
    """
    CREATE FUNCTION signdb.effective_status(status text, heartbeat_at timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN status = 'running'
                 AND (heartbeat_at IS NULL OR heartbeat_at < now() - signdb.heartbeat_timeout())
            THEN 'interrupted' ELSE status END
    $$""",
]

VIEWS = [
    """
    CREATE OR REPLACE VIEW signdb.learning_curves AS
    SELECT m.run_id, r.name AS run_name, r.model, m.step, m.name AS metric, m.value, m.recorded_at
    FROM signdb.run_metrics m
    JOIN signdb.runs r ON r.id = m.run_id""",
    """
    CREATE OR REPLACE VIEW signdb.confusion AS
    SELECT run_id, split, label AS actual, predicted, count(*) AS count
    FROM signdb.predictions
    GROUP BY run_id, split, label, predicted""",
    # Scalar subqueries (not LATERAL joins) so that a query using a few columns
    # of the view only pays for those: the planner drops unused ones.
    # Test metrics: binary runs at threshold 0.5 for the positive class (the
    # second of classes); multi-class runs as the macro average of the
    # one-vs-rest rows at the argmax decision.
    """
    CREATE OR REPLACE VIEW signdb.run_summary AS
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
        (SELECT avg(e.precision) FROM signdb.evaluations e
          WHERE e.run_id = r.id AND e.split = 'test'
            AND CASE WHEN cardinality(r.classes) = 2
                     THEN e.threshold = 0.5 AND e.positive_class = r.classes[2]
                     ELSE e.threshold IS NULL END) AS test_precision,
        (SELECT avg(e.recall) FROM signdb.evaluations e
          WHERE e.run_id = r.id AND e.split = 'test'
            AND CASE WHEN cardinality(r.classes) = 2
                     THEN e.threshold = 0.5 AND e.positive_class = r.classes[2]
                     ELSE e.threshold IS NULL END) AS test_recall,
        (SELECT avg(e.f1) FROM signdb.evaluations e
          WHERE e.run_id = r.id AND e.split = 'test'
            AND CASE WHEN cardinality(r.classes) = 2
                     THEN e.threshold = 0.5 AND e.positive_class = r.classes[2]
                     ELSE e.threshold IS NULL END) AS test_f1
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id""",
    """
    CREATE OR REPLACE VIEW signdb.leaderboard AS
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
        s.finished_at
    FROM signdb.run_summary s
    WHERE s.status = 'succeeded' AND s.test_f1 IS NOT NULL""",
]
