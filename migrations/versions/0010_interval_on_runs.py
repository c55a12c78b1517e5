"""the test accuracy's interval on the run row, so the leaderboard stays one scan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:35:00.000000

0009 gave run_summary two correlated subqueries on score_values; the
leaderboard ranks every run of a dataset, so it paid them 10,000 times
(17 ms -> 114 ms at 10,000 runs). runs.test_accuracy_low/high are written by
evaluate with the scores, like test_precision/recall/F1, and run_summary reads
them from the row. Existing intervals are copied over; the views' columns
keep their names, types and order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_SUMMARY_HEAD = """
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
          WHERE c.dataset_id = r.dataset_id AND c.label = ANY(r.classes)) AS class_names,"""

RUN_SUMMARY_FROM = """
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id"""

RUN_SUMMARY = (
    RUN_SUMMARY_HEAD
    + """
        r.test_accuracy_low,
        r.test_accuracy_high"""
    + RUN_SUMMARY_FROM
)

# 0009's definition, restored by the downgrade.
RUN_SUMMARY_0009 = (
    RUN_SUMMARY_HEAD  # noqa: S608 - constant SQL
    + """
        (SELECT v.ci_low FROM signdb.score_values v
          WHERE v.run_id = r.id AND v.split = 'test' AND v.metric = 'accuracy')
          AS test_accuracy_low,
        (SELECT v.ci_high FROM signdb.score_values v
          WHERE v.run_id = r.id AND v.split = 'test' AND v.metric = 'accuracy')
          AS test_accuracy_high"""
    + RUN_SUMMARY_FROM
)


def upgrade() -> None:
    for column in ("test_accuracy_low", "test_accuracy_high"):
        op.add_column("runs", sa.Column(column, sa.Double(), nullable=True), schema="signdb")
    op.execute(
        "UPDATE signdb.runs r SET test_accuracy_low = v.ci_low, test_accuracy_high = v.ci_high "
        "FROM signdb.score_values v "
        "WHERE v.run_id = r.id AND v.split = 'test' AND v.metric = 'accuracy'"
    )
    op.execute(RUN_SUMMARY)


def downgrade() -> None:
    op.execute(RUN_SUMMARY_0009)
    for column in ("test_accuracy_high", "test_accuracy_low"):
        op.drop_column("runs", column, schema="signdb")
