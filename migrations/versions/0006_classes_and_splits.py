"""named classes, fixed splits and a validation split

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000

- classes(dataset_id, label, name): one row per class; existing labels are
  named by their number.
- images.split: the split a pre-split source fixed (train, val, test) or NULL.
- A val split next to train and test: runs.val_fraction and runs.split (hash:
  by the hash rule; fixed: the images' own splits), val sizes and accuracy;
  run_images, predictions and evaluations accept 'val'.
- signdb.split_of(sha256, seed, test_fraction, val_fraction), the three-way
  rule (test when u < test_fraction, val when u < test_fraction + val_fraction),
  and signdb.split_fraction(sha256, seed) = u itself.
- confusion gains actual_name and predicted_name; run_summary gains the val
  columns and the split mode.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Neither STRICT nor convert_to (which is STABLE): both stop PostgreSQL from
# inlining the function, and a non-inlined call costs ~3x the hash itself. The
# text hashed is ASCII without backslashes (the seed's digits, ':', hex), so
# ::bytea yields the same bytes as convert_to(..., 'UTF8') and Python's encode().
SPLIT_FRACTION = """
    CREATE FUNCTION signdb.split_fraction(image_sha256 text, seed integer)
    RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT ('x' || substr(encode(sha256((seed::text || ':' || image_sha256)::bytea),
                                     'hex'), 1, 13))::bit(52)::bigint::double precision
               / 4503599627370496::double precision
    $$"""

SPLIT_OF_3 = """
    CREATE FUNCTION signdb.split_of(image_sha256 text, seed integer,
                                    test_fraction double precision, val_fraction double precision)
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN signdb.split_fraction(image_sha256, seed) < test_fraction THEN 'test'
            WHEN signdb.split_fraction(image_sha256, seed) < test_fraction + val_fraction THEN 'val'
            ELSE 'train' END
    $$"""

CONFUSION = """
    CREATE OR REPLACE VIEW signdb.confusion AS
    SELECT p.run_id, p.split, p.label AS actual, p.predicted, count(*) AS count,
           ca.name AS actual_name, cp.name AS predicted_name
    FROM signdb.predictions p
    JOIN signdb.runs r ON r.id = p.run_id
    LEFT JOIN signdb.classes ca ON ca.dataset_id = r.dataset_id AND ca.label = p.label
    LEFT JOIN signdb.classes cp ON cp.dataset_id = r.dataset_id AND cp.label = p.predicted
    GROUP BY p.run_id, p.split, p.label, p.predicted, ca.name, cp.name"""

CONFUSION_0001 = """
    CREATE VIEW signdb.confusion AS
    SELECT run_id, split, label AS actual, predicted, count(*) AS count
    FROM signdb.predictions
    GROUP BY run_id, split, label, predicted"""

RUN_SUMMARY = """
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
          WHERE c.dataset_id = r.dataset_id AND c.label = ANY(r.classes)) AS class_names
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id"""

# The 0003 definitions, restored on downgrade.
RUN_SUMMARY_0003 = """
    CREATE VIEW signdb.run_summary AS
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
        r.test_f1
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id"""

LEADERBOARD = """
    CREATE VIEW signdb.leaderboard AS
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
    WHERE s.status = 'succeeded' AND s.test_f1 IS NOT NULL"""

SPLIT_CHECKS = {
    # table: (constraint, old values, new values)
    "run_images": ("ck_run_images_split", "'train', 'test'", "'train', 'val', 'test'"),
    "predictions": ("ck_predictions_split", "'train', 'test'", "'train', 'val', 'test'"),
    "evaluations": (
        "ck_evaluations_split",
        "'train', 'test', 'all'",
        "'train', 'val', 'test', 'all'",
    ),
}


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.CheckConstraint("label >= 0", name=op.f("ck_classes_label_nonnegative")),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_classes_name_length")),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["signdb.datasets.id"],
            name=op.f("fk_classes_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "label", name=op.f("pk_classes")),
        sa.UniqueConstraint("dataset_id", "name", name=op.f("uq_classes_dataset_id_name")),
        schema="signdb",
    )
    op.execute(
        "INSERT INTO signdb.classes (dataset_id, label, name) "
        "SELECT DISTINCT dataset_id, label, label::text FROM signdb.images"
    )
    op.add_column("images", sa.Column("split", sa.Text(), nullable=True), schema="signdb")
    op.create_check_constraint(
        op.f("ck_images_split"), "images", "split IN ('train', 'val', 'test')", schema="signdb"
    )
    op.add_column(
        "runs",
        sa.Column("val_fraction", sa.Double(), server_default="0", nullable=False),
        schema="signdb",
    )
    op.add_column(
        "runs",
        sa.Column("split", sa.Text(), server_default="hash", nullable=False),
        schema="signdb",
    )
    op.add_column("runs", sa.Column("val_size", sa.Integer(), nullable=True), schema="signdb")
    op.add_column("runs", sa.Column("val_accuracy", sa.Double(), nullable=True), schema="signdb")
    op.create_check_constraint(
        op.f("ck_runs_val_fraction"),
        "runs",
        "val_fraction >= 0 AND test_fraction + val_fraction < 1",
        schema="signdb",
    )
    op.create_check_constraint(
        op.f("ck_runs_split"), "runs", "split IN ('hash', 'fixed')", schema="signdb"
    )
    op.execute("UPDATE signdb.runs SET val_size = 0")
    for table, (name, _, new) in SPLIT_CHECKS.items():
        op.drop_constraint(op.f(name), table, schema="signdb", type_="check")
        op.create_check_constraint(op.f(name), table, f"split IN ({new})", schema="signdb")
    op.execute(SPLIT_FRACTION)
    op.execute(SPLIT_OF_3)
    op.execute(CONFUSION)
    op.execute(RUN_SUMMARY)


def downgrade() -> None:
    op.execute("DROP VIEW signdb.leaderboard")
    op.execute("DROP VIEW signdb.run_summary")
    op.execute("DROP VIEW signdb.confusion")
    op.execute(RUN_SUMMARY_0003)
    op.execute(LEADERBOARD)
    op.execute(CONFUSION_0001)
    op.execute("DROP FUNCTION signdb.split_of(text, integer, double precision, double precision)")
    op.execute("DROP FUNCTION signdb.split_fraction(text, integer)")
    # A val split was carved out of train: fold it back; val results have no place.
    op.execute("DELETE FROM signdb.evaluations WHERE split = 'val'")
    op.execute("DELETE FROM signdb.predictions WHERE split = 'val'")
    op.execute("UPDATE signdb.run_images SET split = 'train' WHERE split = 'val'")
    for table, (name, old, _) in SPLIT_CHECKS.items():
        op.drop_constraint(op.f(name), table, schema="signdb", type_="check")
        op.create_check_constraint(op.f(name), table, f"split IN ({old})", schema="signdb")
    op.drop_constraint(op.f("ck_runs_split"), "runs", schema="signdb", type_="check")
    op.drop_constraint(op.f("ck_runs_val_fraction"), "runs", schema="signdb", type_="check")
    for column in ("val_accuracy", "val_size", "split", "val_fraction"):
        op.drop_column("runs", column, schema="signdb")
    op.drop_constraint(op.f("ck_images_split"), "images", schema="signdb", type_="check")
    op.drop_column("images", "split", schema="signdb")
    op.drop_table("classes", schema="signdb")
