"""hyperparameter sweeps: signdb.sweeps, runs that belong to trials, sweep_trials and sweep_summary

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:00:00.000000

A sweep is an Optuna study in schema ``optuna`` of the same database (created
by Optuna itself, through signdb's migration environment, before this
revision runs) plus its settings in signdb.sweeps. Each repeat of a trial is a
signdb run: runs.sweep, runs.trial_number, runs.sweep_repeat, and the run's
objective value (its val accuracy or val F1). The views join Optuna's trials
to those runs; a categorical choice is decoded from Optuna's index into the
choices recorded in the trial's distribution. Downgrading leaves Optuna's
tables alone unless the migration is asked to drop them (--drop-sweeps).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEEP_TRIALS = """
    CREATE VIEW signdb.sweep_trials AS
    SELECT
        s.name AS sweep,
        t.number AS trial_number,
        t.state::text AS state,
        t.state::text = 'PRUNED' AS pruned,
        coalesce(p.params, '{}'::jsonb) AS params,
        v.value AS objective,
        s.objective AS objective_name,
        (SELECT a.value_json::jsonb FROM optuna.trial_system_attributes a
          WHERE a.trial_id = t.trial_id AND a.key = 'failed_trial') AS retry_of,
        t.datetime_start AT TIME ZONE 'UTC' AS started_at,
        t.datetime_complete AT TIME ZONE 'UTC' AS completed_at,
        r.id AS run_id,
        r.sweep_repeat AS repeat,
        r.seed,
        signdb.effective_status(r.status, r.heartbeat_at) AS run_status,
        CASE s.objective WHEN 'val_f1' THEN r.val_f1 ELSE r.val_accuracy END AS run_objective,
        r.val_accuracy,
        r.val_precision,
        r.val_recall,
        r.val_f1,
        r.test_accuracy,
        r.test_precision,
        r.test_recall,
        r.test_f1
    FROM signdb.sweeps s
    JOIN optuna.studies st ON st.study_name = s.name
    JOIN optuna.trials t ON t.study_id = st.study_id
    LEFT JOIN optuna.trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(
                   tp.param_name,
                   CASE tp.distribution_json::jsonb ->> 'name'
                       WHEN 'CategoricalDistribution' THEN
                           ((tp.distribution_json::jsonb -> 'attributes' -> 'choices')
                             ->> tp.param_value::integer)::jsonb
                       WHEN 'IntDistribution' THEN to_jsonb(tp.param_value::bigint)
                       ELSE to_jsonb(tp.param_value)
                   END) AS params
        FROM optuna.trial_params tp WHERE tp.trial_id = t.trial_id
    ) p ON true
    LEFT JOIN signdb.runs r ON r.sweep = s.name AND r.trial_number = t.number"""

SWEEP_SUMMARY = """
    CREATE VIEW signdb.sweep_summary AS
    SELECT
        sweep,
        params,
        count(DISTINCT trial_number) AS trials,
        count(run_id) AS runs,
        avg(run_objective) AS objective_mean,
        stddev_samp(run_objective) AS objective_sd,
        avg(val_accuracy) AS val_accuracy_mean,
        stddev_samp(val_accuracy) AS val_accuracy_sd,
        avg(val_precision) AS val_precision_mean,
        stddev_samp(val_precision) AS val_precision_sd,
        avg(val_recall) AS val_recall_mean,
        stddev_samp(val_recall) AS val_recall_sd,
        avg(val_f1) AS val_f1_mean,
        stddev_samp(val_f1) AS val_f1_sd,
        avg(test_accuracy) AS test_accuracy_mean,
        stddev_samp(test_accuracy) AS test_accuracy_sd,
        avg(test_precision) AS test_precision_mean,
        stddev_samp(test_precision) AS test_precision_sd,
        avg(test_recall) AS test_recall_mean,
        stddev_samp(test_recall) AS test_recall_sd,
        avg(test_f1) AS test_f1_mean,
        stddev_samp(test_f1) AS test_f1_sd
    FROM signdb.sweep_trials
    WHERE state = 'COMPLETE' AND run_status = 'succeeded'
    GROUP BY sweep, params"""

RUN_COLUMNS = (
    ("trial_number", sa.Integer),
    ("sweep_repeat", sa.Integer),
    ("val_precision", sa.Double),
    ("val_recall", sa.Double),
    ("val_f1", sa.Double),
)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("engine", sa.Text(), server_default="numpy", nullable=False),
        sa.Column("classes", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("space", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("fixed", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("sampler", sa.Text(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("test_fraction", sa.Double(), nullable=False),
        sa.Column("val_fraction", sa.Double(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("pruner", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=False),
        sa.Column("grace_seconds", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_sweeps_name_length")),
        sa.CheckConstraint("sampler IN ('tpe', 'random', 'grid')", name=op.f("ck_sweeps_sampler")),
        sa.CheckConstraint(
            "objective IN ('val_accuracy', 'val_f1')", name=op.f("ck_sweeps_objective")
        ),
        sa.CheckConstraint("trials > 0 AND repeats > 0", name=op.f("ck_sweeps_counts")),
        sa.CheckConstraint("val_fraction > 0 OR split = 'fixed'", name=op.f("ck_sweeps_val")),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["signdb.datasets.id"], name=op.f("fk_sweeps_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
        sa.UniqueConstraint("name", name=op.f("uq_sweeps_name")),
        schema="signdb",
    )
    op.add_column("runs", sa.Column("sweep", sa.Text(), nullable=True), schema="signdb")
    for name, type_ in RUN_COLUMNS:
        op.add_column("runs", sa.Column(name, type_(), nullable=True), schema="signdb")
    op.create_foreign_key(
        op.f("fk_runs_sweep_sweeps"),
        "runs",
        "sweeps",
        ["sweep"],
        ["name"],
        source_schema="signdb",
        referent_schema="signdb",
        ondelete="SET NULL",
    )
    op.create_index(
        op.f("ix_runs_sweep_trial_number"), "runs", ["sweep", "trial_number"], schema="signdb"
    )
    op.execute(SWEEP_TRIALS)
    op.execute(SWEEP_SUMMARY)


def downgrade() -> None:
    op.execute("DROP VIEW signdb.sweep_summary")
    op.execute("DROP VIEW signdb.sweep_trials")
    op.drop_index(op.f("ix_runs_sweep_trial_number"), table_name="runs", schema="signdb")
    op.drop_constraint(op.f("fk_runs_sweep_sweeps"), "runs", schema="signdb", type_="foreignkey")
    for name, _ in (*RUN_COLUMNS, ("sweep", sa.Text)):
        op.drop_column("runs", name, schema="signdb")
    op.drop_table("sweeps", schema="signdb")
    if context.config.attributes.get("drop_sweeps"):
        op.execute("DROP SCHEMA IF EXISTS optuna CASCADE")
