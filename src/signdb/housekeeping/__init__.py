"""Housekeeping: deleting runs and datasets, and the embedded server's state and stop."""

from signdb.housekeeping.datasets import DatasetDeletion, delete_dataset
from signdb.housekeeping.runs import RunDeletion, delete_runs
from signdb.housekeeping.server import ServerStatus, StopResult, server_status, stop_embedded

__all__ = [
    "DatasetDeletion",
    "RunDeletion",
    "ServerStatus",
    "StopResult",
    "delete_dataset",
    "delete_runs",
    "server_status",
    "stop_embedded",
]
