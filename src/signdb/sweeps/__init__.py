"""Sweeps: Optuna studies in the same PostgreSQL, whose trials are signdb runs, selected on val.

``create`` checks a request and queues the study's whole budget; ``work`` is a
worker (start any number, anywhere); ``reap`` fails trials whose worker died;
``show`` reads the results through the analysts' views.
"""

from signdb.sweeps.create import CreateResult, SweepRequest, create_sweep
from signdb.sweeps.show import ShowResult, show
from signdb.sweeps.trial import TrialOutcome
from signdb.sweeps.worker import ReapResult, WorkResult, reap, work

__all__ = [
    "CreateResult",
    "ReapResult",
    "ShowResult",
    "SweepRequest",
    "TrialOutcome",
    "WorkResult",
    "create_sweep",
    "reap",
    "show",
    "work",
]
