"""signdb: a SQL-first home for image-classification experiments.

Datasets, runs, metrics, weights, predictions and evaluations live in
PostgreSQL; this package loads, trains and evaluates, and your own training
code logs into the same tables through :func:`connect`::

    import signdb

    db = signdb.connect()  # $SIGNDB_DATABASE_URL, else the embedded server
    db.load("photos/", dataset="photos", color="rgb")
    with db.start_run("photos", "my-model", val_fraction=0.1) as run:
        X, y, ids = run.arrays("train")
        ...
        run.log(step, loss=loss)

Names are imported when first used, so ``import signdb`` (and the CLI) stay quick.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from signdb._version import __version__

if _TYPE_CHECKING:
    from signdb.api import Database, connect
    from signdb.dataset import Class, Dataset
    from signdb.errors import SignDBError
    from signdb.evaluation import CompareResult, EvaluationResult
    from signdb.housekeeping import DatasetDeletion, RunDeletion
    from signdb.loading import LoadResult
    from signdb.tracking import Run
    from signdb.training import TrainResult

#: Public name -> the module it lives in.
_EXPORTS = {
    "Class": "signdb.dataset",
    "Database": "signdb.api",
    "CompareResult": "signdb.evaluation",
    "Dataset": "signdb.dataset",
    "DatasetDeletion": "signdb.housekeeping",
    "EvaluationResult": "signdb.evaluation",
    "LoadResult": "signdb.loading",
    "Run": "signdb.tracking",
    "RunDeletion": "signdb.housekeeping",
    "SignDBError": "signdb.errors",
    "TrainResult": "signdb.training",
    "connect": "signdb.api",
}

__all__ = [
    "Class",
    "CompareResult",
    "Database",
    "Dataset",
    "DatasetDeletion",
    "EvaluationResult",
    "LoadResult",
    "Run",
    "RunDeletion",
    "SignDBError",
    "TrainResult",
    "__version__",
    "connect",
]
assert set(__all__) == {*_EXPORTS, "__version__"}


def __getattr__(name: str) -> _Any:
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'signdb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*(n for n in globals() if n.startswith("_")), *__all__})
