"""Tracking: a run's life in PostgreSQL, shared by the built-in trainer and people's own code."""

from signdb.tracking.data import RunData, order_key
from signdb.tracking.lease import RankLease
from signdb.tracking.listing import list_runs, show_run
from signdb.tracking.logger import Heartbeat, MetricLogger
from signdb.tracking.pool import ImagePool
from signdb.tracking.provenance import code_version
from signdb.tracking.ranks import JoinedRun
from signdb.tracking.run import Run
from signdb.tracking.start import TrialLink, join_run, reopen_run, run_classes, start_run

__all__ = [
    "Heartbeat",
    "ImagePool",
    "JoinedRun",
    "MetricLogger",
    "RankLease",
    "Run",
    "RunData",
    "TrialLink",
    "code_version",
    "join_run",
    "list_runs",
    "order_key",
    "reopen_run",
    "run_classes",
    "show_run",
    "start_run",
]
