"""The tables of datasets, runs and their results (revisions 0001-0012, 0015-0017)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from signdb.db.schema.base import (
    ENGINES,
    RUN_STATUSES,
    SPLIT_MODES,
    SPLITS,
    _in,
    _now,
    _run_fk,
    metadata,
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    # Preprocessing parameters: every image of a dataset was made the same way.
    Column("preprocessing", JSONB, nullable=False),
    Column("height", SmallInteger, nullable=False),
    Column("width", SmallInteger, nullable=False),
    Column("channels", SmallInteger, nullable=False),
    _now(),
    UniqueConstraint("name"),
    CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
    CheckConstraint("channels IN (1, 3)", name="channels"),
)

classes = Table(
    "classes",
    metadata,
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("label", Integer, nullable=False),
    Column("name", Text, nullable=False),
    PrimaryKeyConstraint("dataset_id", "label"),
    UniqueConstraint("dataset_id", "name"),
    CheckConstraint("label >= 0", name="label_nonnegative"),
    CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
)

images = Table(
    "images",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "dataset_id",
        Integer,
        ForeignKey("datasets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("label", Integer, nullable=False),
    Column("pixels", LargeBinary, nullable=False),
    Column("height", SmallInteger, nullable=False),
    Column("width", SmallInteger, nullable=False),
    Column("channels", SmallInteger, nullable=False),
    # Hex sha256 of the stored pixel bytes: the image's identity within its dataset.
    # Compared bytewise (hex sorts the same in every locale; revision 0012).
    Column("sha256", Text(collation="C"), nullable=False),
    Column("source", Text, nullable=False),
    _now(),
    # The split a pre-split source (train/ and test/ folders, a split column) fixed.
    Column("split", Text),
    UniqueConstraint("dataset_id", "sha256"),
    CheckConstraint(_in("split", SPLITS), name="split"),
    CheckConstraint("label >= 0", name="label_nonnegative"),
    # Not '^[0-9a-f]{64}$': the regex's bounded repeat cost every loaded row ~5 us.
    CheckConstraint("length(sha256) = 64 AND sha256 !~ '[^0-9a-f]'", name="sha256_hex"),
    CheckConstraint("octet_length(pixels) = height * width * channels", name="pixels_shape"),
    Index(None, "dataset_id", "label"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("name", Text),
    Column("model", Text, nullable=False),
    Column("classes", ARRAY(Integer), nullable=False),
    Column("hyperparams", JSONB, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("test_fraction", Double, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("error", Text),
    # sha256 over the sorted (image sha256, split) pairs the run trained and tested on.
    Column("dataset_fingerprint", Text),
    Column("code_version", Text),
    Column("host", Text),
    Column("pid", Integer),
    Column("train_size", Integer),
    Column("test_size", Integer),
    Column("total_steps", Integer),
    Column("steps_done", Integer, nullable=False, server_default="0"),
    Column("train_accuracy", Double),
    Column("test_accuracy", Double),
    _now(),
    # Headline test metrics, written by `signdb evaluate` with the rows they summarise.
    Column("test_precision", Double),
    Column("test_recall", Double),
    Column("test_f1", Double),
    # Settings of the built-in trainer (cache, eval_every, checkpoint_every);
    # the model's own hyperparameters stay in hyperparams.
    Column("trainer", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("engine", Text, nullable=False, server_default="numpy"),
    Column("val_fraction", Double, nullable=False, server_default="0"),
    Column("split", Text, nullable=False, server_default="hash"),
    Column("val_size", Integer),
    Column("val_accuracy", Double),
    # A run that is one repeat of a sweep's trial (its objective is val_accuracy or val_f1).
    Column("sweep", Text, ForeignKey("sweeps.name", ondelete="SET NULL")),
    Column("trial_number", Integer),
    Column("sweep_repeat", Integer),
    Column("val_precision", Double),
    Column("val_recall", Double),
    Column("val_f1", Double),
    # The test accuracy's bootstrap interval, copied from score_values like the headlines.
    Column("test_accuracy_low", Double),
    Column("test_accuracy_high", Double),
    # A submitted run (revision 0015): its queue and priority, the procrastinate job
    # of its current attempt, the attempt number (checked by signdb.check_attempt:
    # a superseded attempt writes nothing) and the worker that holds it.
    Column("queue", Text),
    Column("priority", Integer),
    Column("job_id", BigInteger),
    Column("worker_host", Text),
    Column("worker_pid", Integer),
    Column("attempt", Integer, nullable=False, server_default="0"),
    # Processes that trained the run (torch.distributed); the launch that made a
    # distributed run, so a rank 0 that torchrun restarts continues it (revision 0016).
    Column("world_size", Integer, nullable=False, server_default="1"),
    Column("launch_key", Text),
    CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    CheckConstraint("world_size >= 1", name="world_size"),
    UniqueConstraint("launch_key"),
    CheckConstraint(_in("engine", ENGINES), name="engine"),
    CheckConstraint("val_fraction >= 0 AND test_fraction + val_fraction < 1", name="val_fraction"),
    CheckConstraint(_in("split", SPLIT_MODES), name="split"),
    CheckConstraint("cardinality(classes) >= 2", name="two_classes"),
    CheckConstraint("test_fraction > 0 AND test_fraction < 1", name="test_fraction"),
    Index(None, "dataset_id"),
    Index(None, "status"),
    Index(None, "sweep", "trial_number"),
)

SAMPLERS = ("tpe", "random", "grid")
OBJECTIVES = ("val_accuracy", "val_f1")

# A hyperparameter sweep: an Optuna study (schema optuna) and its settings.
sweeps = Table(
    "sweeps",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("name", Text, nullable=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("model", Text, nullable=False),
    Column("engine", Text, nullable=False, server_default="numpy"),
    Column("classes", ARRAY(Integer), nullable=False),
    Column("space", JSONB, nullable=False),
    Column("fixed", JSONB, nullable=False),
    Column("sampler", Text, nullable=False),
    Column("objective", Text, nullable=False),
    Column("trials", Integer, nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("test_fraction", Double, nullable=False),
    Column("val_fraction", Double, nullable=False),
    Column("split", Text, nullable=False),
    Column("pruner", JSONB, nullable=False),
    Column("heartbeat_seconds", Integer, nullable=False),
    Column("grace_seconds", Integer, nullable=False),
    _now(),
    UniqueConstraint("name"),
    CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
    CheckConstraint(_in("sampler", SAMPLERS), name="sampler"),
    CheckConstraint(_in("objective", OBJECTIVES), name="objective"),
    CheckConstraint("trials > 0 AND repeats > 0", name="counts"),
    CheckConstraint("val_fraction > 0 OR split = 'fixed'", name="val"),
)

# The exact train/test assignment of each run, written once when it starts.
run_images = Table(
    "run_images",
    metadata,
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("image_id", BigInteger, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("split", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "image_id"),
    CheckConstraint(_in("split", SPLITS), name="split"),
    Index(None, "image_id"),
)

run_metrics = Table(
    "run_metrics",
    metadata,
    # No foreign key: its per-row check costs 9x on this append-only log. A
    # trigger on runs deletes a run's metrics (migration 0004).
    Column("run_id", BigInteger, nullable=False),
    Column("step", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Double, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Append-only time series: a BRIN index finds a run's rows at a fraction of
    # a btree's insert cost (see migration 0004 for the measurements).
    Index(
        None,
        "run_id",
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 8, "autosummarize": "on"},
    ),
    # Live views ask for what was recorded since they last looked (revision 0013).
    Index(
        None,
        "recorded_at",
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 8, "autosummarize": "on"},
    ),
)

weights = Table(
    "weights",
    metadata,
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("tensor", Text, nullable=False),
    Column("shape", ARRAY(Integer), nullable=False),
    Column("data", ARRAY(REAL), nullable=False),
    Column("final", Boolean, nullable=False, server_default="false"),
    _now(),
    # A tensor that is not float32 also keeps its exact little-endian bytes.
    Column("dtype", Text, nullable=False, server_default="float32"),
    Column("raw", LargeBinary),
    PrimaryKeyConstraint("run_id", "step", "tensor"),
    CheckConstraint("(dtype = 'float32') = (raw IS NULL)", name="raw_dtype"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("image_id", BigInteger, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("split", Text, nullable=False),
    Column("label", Integer, nullable=False),
    Column("predicted", Integer, nullable=False),
    Column("probability", Double, nullable=False),
    # The whole probability vector, in the run's classes order (NULL: evaluated
    # before revision 0009; evaluating again fills it in).
    Column("probabilities", ARRAY(REAL)),
    PrimaryKeyConstraint("run_id", "image_id"),
    CheckConstraint(_in("split", SPLITS), name="split"),
    CheckConstraint("probability BETWEEN 0 AND 1", name="probability_range"),
    Index(None, "run_id", "split"),
    # Deleting images cascades here once per image (revision 0017).
    Index(None, "image_id"),
)


def _rate(numerator: str, denominator: str) -> Computed:
    # NULLIF turns a zero denominator into NULL instead of an error.
    return Computed(f"({numerator})::double precision / NULLIF({denominator}, 0)", persisted=True)


evaluations = Table(
    "evaluations",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("split", Text, nullable=False),
    Column("positive_class", Integer, nullable=False),
    # NULL threshold: a multi-class one-vs-rest row at the argmax decision.
    Column("threshold", Double),
    Column("tp", BigInteger, nullable=False),
    Column("fp", BigInteger, nullable=False),
    Column("tn", BigInteger, nullable=False),
    Column("fn", BigInteger, nullable=False),
    Column("accuracy", Double, _rate("tp + tn", "tp + fp + tn + fn")),
    Column("precision", Double, _rate("tp", "tp + fp")),
    Column("recall", Double, _rate("tp", "tp + fn")),
    Column("f1", Double, _rate("2 * tp", "2 * tp + fp + fn")),
    Column("evaluated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint(
        "run_id", "split", "positive_class", "threshold", postgresql_nulls_not_distinct=True
    ),
    CheckConstraint(_in("split", (*SPLITS, "all")), name="split"),
    CheckConstraint("tp >= 0 AND fp >= 0 AND tn >= 0 AND fn >= 0", name="counts_nonnegative"),
    CheckConstraint("threshold IS NULL OR threshold BETWEEN 0 AND 1", name="threshold_range"),
)


EVAL_SPLITS = (*SPLITS, "all")


# The scores of an evaluated split (accuracy, macro F1, ROC AUC, ...), with
# bootstrap intervals where computed; written with its predictions.
score_values = Table(
    "score_values",
    metadata,
    _run_fk(),
    Column("split", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("value", Double),
    Column("ci_low", Double),
    Column("ci_high", Double),
    PrimaryKeyConstraint("run_id", "split", "metric"),
    CheckConstraint(_in("split", EVAL_SPLITS), name="split"),
    CheckConstraint("ci_low IS NULL OR ci_low <= ci_high", name="interval"),
)

# One-vs-rest scores of each class of an evaluated split (ROC AUC, average precision).
class_score_values = Table(
    "class_score_values",
    metadata,
    _run_fk(),
    Column("split", Text, nullable=False),
    Column("label", Integer, nullable=False),
    Column("metric", Text, nullable=False),
    Column("value", Double),
    PrimaryKeyConstraint("run_id", "split", "label", "metric"),
    CheckConstraint(_in("split", EVAL_SPLITS), name="split"),
)

# Threshold-free one-vs-rest curves, one row per class: point i of the arrays
# is a distinct score of the class (an image is positive when its score is >=
# thresholds[i]), from threshold Infinity (nothing positive) down, with the
# true and false positives there; tn and fn follow from the totals. The view
# class_curves unnests them (ROC is (fpr, tpr); PR is (recall, precision)).
# Arrays, not a row per point: a 10-class split has ~3,000 points, and a row
# each paid a foreign-key check each (20 ms of every evaluation, revision 0011).
curves = Table(
    "curves",
    metadata,
    _run_fk(),
    Column("split", Text, nullable=False),
    Column("label", Integer, nullable=False),
    Column("positives", Integer, nullable=False),
    Column("negatives", Integer, nullable=False),
    Column("thresholds", ARRAY(Double), nullable=False),
    Column("tp", ARRAY(Integer), nullable=False),
    Column("fp", ARRAY(Integer), nullable=False),
    PrimaryKeyConstraint("run_id", "split", "label"),
    CheckConstraint(_in("split", EVAL_SPLITS), name="split"),
    CheckConstraint("positives >= 0 AND negatives >= 0", name="counts_nonnegative"),
    CheckConstraint(
        "cardinality(tp) = cardinality(thresholds) AND cardinality(fp) = cardinality(thresholds)",
        name="points",
    ),
)

# Reliability: the images of each of 15 equal-width confidence bins (bin b holds
# confidences in [b/15, (b+1)/15), the last bin closed), as the ECE counts them.
calibration_bins = Table(
    "calibration_bins",
    metadata,
    _run_fk(),
    Column("split", Text, nullable=False),
    Column("bin", SmallInteger, nullable=False),
    Column("images", Integer, nullable=False),
    Column("mean_confidence", Double, nullable=False),
    Column("accuracy", Double, nullable=False),
    PrimaryKeyConstraint("run_id", "split", "bin"),
    CheckConstraint(_in("split", EVAL_SPLITS), name="split"),
    CheckConstraint("bin >= 0 AND images > 0", name="bin"),
)
