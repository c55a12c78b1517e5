"""runs keep their headline test metrics; run_summary and leaderboard read them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 11:00:00.000000

0001 computed test_precision, test_recall and test_f1 in run_summary with
subqueries over evaluations, so the leaderboard paid index probes for every
run (2.4 s for 10,000 runs with 101 thresholds each; 0.28 s with the best
join). The three headline numbers now live on runs, written by `signdb
evaluate` in the same transaction as the evaluation rows they summarise
(binary: the positive class at threshold 0.5; multi-class: the macro average
of the one-vs-rest rows), and backfilled here from existing evaluations.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from signdb.db import roles

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
        r.test_f1
    FROM signdb.runs r
    JOIN signdb.datasets d ON d.id = r.dataset_id"""


# The 0001 definition, restored on downgrade.
RUN_SUMMARY_0001 = """
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
    JOIN signdb.datasets d ON d.id = r.dataset_id"""


# As in 0001; recreated on downgrade because it depends on run_summary.
LEADERBOARD_0001 = """
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

HEADLINE_COLUMNS = ("test_precision", "test_recall", "test_f1")

# The same numbers signdb.store.evaluations.record_headline writes.
BACKFILL = """
    UPDATE signdb.runs r SET test_precision = h.p, test_recall = h.r, test_f1 = h.f
    FROM (
        SELECT e.run_id, avg(e.precision) AS p, avg(e.recall) AS r, avg(e.f1) AS f
        FROM signdb.evaluations e JOIN signdb.runs x ON x.id = e.run_id
        WHERE e.split = 'test'
          AND CASE WHEN cardinality(x.classes) = 2
                   THEN e.threshold = 0.5 AND e.positive_class = x.classes[2]
                   ELSE e.threshold IS NULL END
        GROUP BY e.run_id
    ) h
    WHERE h.run_id = r.id"""


def upgrade() -> None:
    for column in HEADLINE_COLUMNS:
        op.add_column("runs", sa.Column(column, sa.Double(), nullable=True), schema="signdb")
    op.execute(BACKFILL)
    op.execute(RUN_SUMMARY)
    for statement in roles.grant_sql():
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP VIEW signdb.leaderboard")
    op.execute("DROP VIEW signdb.run_summary")
    op.execute(RUN_SUMMARY_0001.replace("CREATE OR REPLACE VIEW", "CREATE VIEW"))
    op.execute(LEADERBOARD_0001)
    for column in HEADLINE_COLUMNS:
        op.drop_column("runs", column, schema="signdb")
    for statement in roles.grant_sql():
        op.execute(statement)
