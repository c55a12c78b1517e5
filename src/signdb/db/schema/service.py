"""The tables of ``signdb serve``: metric buckets for charts and the server's tokens
(revision 0013), model aliases, stored ONNX models and served predictions (0014)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from signdb.db.schema.base import _in, _now, _run_fk, metadata

# Each metric's points summarised in buckets of WIDTHS steps, written with the
# points (store.metrics): a chart of a million-point series reads the buckets,
# not the points. A flush that splits a bucket leaves a partial row; readers
# combine the rows of a bucket (revision 0013).
METRIC_BUCKET_WIDTHS = (64, 4096)
metric_buckets = Table(
    "metric_buckets",
    metadata,
    _run_fk(),
    Column("name", Text, nullable=False),
    Column("width", Integer, nullable=False),
    Column("bucket", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("first_step", Integer, nullable=False),
    Column("last_step", Integer, nullable=False),
    Column("min_value", Double, nullable=False),
    Column("min_step", Integer, nullable=False),
    Column("max_value", Double, nullable=False),
    Column("max_step", Integer, nullable=False),
    CheckConstraint("points > 0", name="points"),
    CheckConstraint(_in("width", METRIC_BUCKET_WIDTHS), name="width"),
    Index(None, "run_id", "name", "width", "bucket"),
)

TOKEN_ROLES = ("viewer", "editor")

# The server's API tokens: only each token's sha256 is kept (revision 0013).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("token_hash", Text(collation="C"), nullable=False),
    _now(),
    UniqueConstraint("name"),
    UniqueConstraint("token_hash"),
    CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
    CheckConstraint(_in("role", TOKEN_ROLES), name="role"),
    CheckConstraint("length(token_hash) = 64 AND token_hash !~ '[^0-9a-f]'", name="token_hash_hex"),
)


# -- serving (revision 0014) ----------------------------------------------------
#: A model alias is a stable name for a run (MLflow's ``@champion``); ``run-<id>``
#: names a run directly, so an alias may not look like one.
ALIAS_NAME_CHECK = "name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' AND name !~ '^run-'"

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", Text, primary_key=True),
    # RESTRICT: an aliased run cannot be deleted; re-point or remove the alias first.
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="RESTRICT"), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_by", Text, nullable=False),
    CheckConstraint(ALIAS_NAME_CHECK, name="name_format"),
    Index(None, "run_id"),
)

# Every change of an alias, written by a trigger on model_aliases (so a change
# made in plain SQL is recorded too). No foreign keys: the history names runs
# that may since have been deleted.
model_alias_events = Table(
    "model_alias_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("alias", Text, nullable=False),
    Column("run_id", BigInteger),  # NULL: the alias was removed
    Column("previous_run_id", BigInteger),  # NULL: the alias was created
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("changed_by", Text, nullable=False),
    Index(None, "alias", "changed_at"),
)

# A model file stored with a run (``run.save_onnx``): what the server serves
# for it, and what makes a run of people's own code servable at all.
onnx_models = Table(
    "onnx_models",
    metadata,
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("model", LargeBinary, nullable=False),
    Column("sha256", Text, nullable=False),
    _now(),
    CheckConstraint("length(sha256) = 64", name="sha256_length"),
)

# What served models answered, one row per image, written in batches off the
# request path. An append-only log like run_metrics: no foreign key (its check
# would cost every row, and the log outlives a deleted run) and a BRIN index.
served_predictions = Table(
    "served_predictions",
    metadata,
    Column("model", Text, nullable=False),  # the name the request used: an alias or run-<id>
    Column("run_id", BigInteger, nullable=False),
    Column("served_at", DateTime(timezone=True), nullable=False),
    Column("predicted", Integer, nullable=False),
    # The predicted label's probability, kept so the hourly view never unnests arrays.
    Column("confidence", REAL, nullable=False),
    Column("probabilities", ARRAY(REAL), nullable=False),
    Column("latency_ms", REAL, nullable=False),
    Index(None, "served_at", postgresql_using="brin"),
)
