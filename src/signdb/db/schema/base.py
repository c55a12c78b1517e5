"""What every part of the schema shares: its name, its value sets, the metadata with the
naming convention every constraint follows, and the column helpers."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    MetaData,
    func,
)

SCHEMA = "signdb"
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "interrupted", "cancelled")
#: "external": a run logged through the Python API by someone's own training code.
ENGINES = ("numpy", "torch", "external")
SPLITS = ("train", "val", "test")
#: How a run's images were split: by the hash rule, or by the splits the dataset fixed.
SPLIT_MODES = ("hash", "fixed")

metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    },
)


def _now() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _run_fk() -> Column:
    return Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
