"""serving trained models: aliases and their history, stored ONNX models, served predictions

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 10:00:00.000000

model_aliases names the run a served model answers with (MLflow's @champion);
its foreign key RESTRICTs, so an aliased run cannot be deleted. A trigger
writes every change (created, re-pointed, removed; who and when) to
model_alias_events, which the analysts read as model_alias_history: a change
made in plain SQL is recorded too, by the database user unless the session
set signdb.actor. onnx_models holds a model file stored with a run
(run.save_onnx), which is what makes a run of people's own code servable.
served_predictions is the append-only log of what served models answered, one
row per image, and served_hourly sums it per model, run and hour: counts, mean
confidence and latency, and the predicted-class mix, for watching drift in SQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALIAS_NAME_CHECK = "name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' AND name !~ '^run-'"

RECORD_EVENT = """
    CREATE FUNCTION signdb.record_model_alias_event() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO signdb.model_alias_events (alias, run_id, previous_run_id, changed_by)
            VALUES (OLD.name, NULL, OLD.run_id,
                    coalesce(nullif(current_setting('signdb.actor', true), ''), current_user));
            RETURN OLD;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.run_id = OLD.run_id THEN
            RETURN NEW;
        END IF;
        INSERT INTO signdb.model_alias_events (alias, run_id, previous_run_id, changed_by)
        VALUES (NEW.name, NEW.run_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.run_id END,
                NEW.updated_by);
        RETURN NEW;
    END $$"""

ALIAS_TRIGGER = """
    CREATE TRIGGER model_aliases_history
    AFTER INSERT OR UPDATE OR DELETE ON signdb.model_aliases
    FOR EACH ROW EXECUTE FUNCTION signdb.record_model_alias_event()"""

MODEL_ALIAS_HISTORY = """
    CREATE VIEW signdb.model_alias_history AS
    SELECT e.alias, e.run_id, e.previous_run_id, e.changed_by, e.changed_at,
           r.model, r.engine, d.name AS dataset, e.id AS event_id
    FROM signdb.model_alias_events e
    LEFT JOIN signdb.runs r ON r.id = e.run_id
    LEFT JOIN signdb.datasets d ON d.id = r.dataset_id"""

SERVED_HOURLY = """
    CREATE VIEW signdb.served_hourly AS
    SELECT p.model, p.run_id, p.hour,
           sum(p.predictions)::bigint AS predictions,
           sum(p.confidence_sum) / sum(p.predictions) AS mean_confidence,
           sum(p.latency_sum) / sum(p.predictions) AS mean_latency_ms,
           jsonb_object_agg(coalesce(c.name, p.predicted::text), p.predictions) AS class_counts,
           jsonb_object_agg(coalesce(c.name, p.predicted::text),
                            p.predictions::double precision / p.total) AS class_mix
    FROM (SELECT s.model, s.run_id, date_trunc('hour', s.served_at) AS hour, s.predicted,
                 count(*) AS predictions,
                 sum(count(*)) OVER (PARTITION BY s.model, s.run_id,
                                     date_trunc('hour', s.served_at))::double precision AS total,
                 sum(s.confidence::double precision) AS confidence_sum,
                 sum(s.latency_ms::double precision) AS latency_sum
          FROM signdb.served_predictions s
          GROUP BY s.model, s.run_id, date_trunc('hour', s.served_at), s.predicted) p
    LEFT JOIN signdb.runs r ON r.id = p.run_id
    LEFT JOIN signdb.classes c ON c.dataset_id = r.dataset_id AND c.label = p.predicted
    GROUP BY p.model, p.run_id, p.hour"""


def _now() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.CheckConstraint(ALIAS_NAME_CHECK, name=op.f("ck_model_aliases_name_format")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["signdb.runs.id"],
            name=op.f("fk_model_aliases_run_id_runs"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model_aliases")),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_model_aliases_run_id"), "model_aliases", ["run_id"], schema="signdb"
    )
    op.create_table(
        "model_alias_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("previous_run_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_alias_events")),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_model_alias_events_alias_changed_at"),
        "model_alias_events",
        ["alias", "changed_at"],
        schema="signdb",
    )
    op.execute(RECORD_EVENT)
    op.execute(ALIAS_TRIGGER)
    op.create_table(
        "onnx_models",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        _now(),
        sa.CheckConstraint("length(sha256) = 64", name=op.f("ck_onnx_models_sha256_length")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["signdb.runs.id"], name=op.f("fk_onnx_models_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_onnx_models")),
        schema="signdb",
    )
    op.create_table(
        "served_predictions",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("predicted", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.REAL(), nullable=False),
        sa.Column("probabilities", postgresql.ARRAY(sa.REAL()), nullable=False),
        sa.Column("latency_ms", sa.REAL(), nullable=False),
        schema="signdb",
    )
    op.create_index(
        op.f("ix_served_predictions_served_at"),
        "served_predictions",
        ["served_at"],
        schema="signdb",
        postgresql_using="brin",
    )
    op.execute(MODEL_ALIAS_HISTORY)
    op.execute(SERVED_HOURLY)


def downgrade() -> None:
    op.execute("DROP VIEW signdb.served_hourly")
    op.execute("DROP VIEW signdb.model_alias_history")
    op.drop_index(
        op.f("ix_served_predictions_served_at"), table_name="served_predictions", schema="signdb"
    )
    op.drop_table("served_predictions", schema="signdb")
    op.drop_table("onnx_models", schema="signdb")
    op.execute("DROP TRIGGER model_aliases_history ON signdb.model_aliases")
    op.execute("DROP FUNCTION signdb.record_model_alias_event()")
    op.drop_index(
        op.f("ix_model_alias_events_alias_changed_at"),
        table_name="model_alias_events",
        schema="signdb",
    )
    op.drop_table("model_alias_events", schema="signdb")
    op.drop_index(op.f("ix_model_aliases_run_id"), table_name="model_aliases", schema="signdb")
    op.drop_table("model_aliases", schema="signdb")
