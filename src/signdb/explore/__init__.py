"""What ``signdb serve`` shows: runs, one run, metric series, comparisons, sweeps,
datasets, the leaderboard and images, read and shaped for pages and their JSON twins.

Every function takes an Engine and only reads, so the server can call it with
an engine whose transactions are read-only and run as ``signdb_analyst``.
"""

from signdb.explore.catalog import (
    dataset_detail,
    image_png,
    leaderboard,
    list_datasets,
    list_sweeps,
    sweep_detail,
)
from signdb.explore.compare import compare_runs, parse_run_ids
from signdb.explore.metrics import live_update, metric_csv, metric_history
from signdb.explore.run import run_confusion, run_detail, run_scores
from signdb.explore.runs import RunQuery, list_runs, parse_param_filter

__all__ = [
    "RunQuery",
    "compare_runs",
    "dataset_detail",
    "image_png",
    "leaderboard",
    "list_datasets",
    "list_runs",
    "list_sweeps",
    "live_update",
    "metric_csv",
    "metric_history",
    "parse_param_filter",
    "parse_run_ids",
    "run_confusion",
    "run_detail",
    "run_scores",
    "sweep_detail",
]
