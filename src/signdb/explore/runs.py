"""The runs page: every run, filtered, sorted and paged in the database.

>>> page = list_runs(db.engine, RunQuery(model="softmax", sort="-test_accuracy"))
>>> page["total"] >= 2, page["runs"][0]["model"]
(True, 'softmax')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.db.schema import RUN_STATUSES
from signdb.errors import InvalidArgument
from signdb.store import listing

MAX_PER_PAGE = 200
SORTS = tuple(listing.SORTS)


@dataclass(frozen=True)
class RunQuery:
    """What the runs page asks for. ``sort`` is a column, ``-column`` for descending;
    ``params`` are hyperparameter values the runs must have."""

    dataset: str | None = None
    model: str | None = None
    status: str | None = None
    sweep: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sort: str = "-run_id"
    page: int = 1
    per_page: int = 50

    def check(self) -> None:
        key = self.sort.removeprefix("-")
        if key not in listing.SORTS:
            raise InvalidArgument(
                f"sort must be one of {', '.join(SORTS)} (prefix - for descending), "
                f"got {self.sort!r}"
            )
        if self.status is not None and self.status not in RUN_STATUSES:
            raise InvalidArgument(
                f"status must be one of {', '.join(RUN_STATUSES)}, got {self.status!r}"
            )
        if self.page < 1:
            raise InvalidArgument(f"page must be 1 or more, got {self.page}")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise InvalidArgument(f"per_page must be from 1 to {MAX_PER_PAGE}, got {self.per_page}")


def parse_param_filter(raw: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as a hyperparameter filter; VALUE is read as JSON when it is JSON
    (``lr=0.01``, ``hidden=[64]``), else as text (``optimizer=adam``).

    >>> parse_param_filter("lr=0.01"), parse_param_filter("optimizer=adam")
    (('lr', 0.01), ('optimizer', 'adam'))
    """
    name, sep, value = raw.partition("=")
    if not sep or not name.strip():
        raise InvalidArgument(
            f"a hyperparameter filter is NAME=VALUE, e.g. param=lr=0.01, got {raw!r}"
        )
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def list_runs(engine: Engine, query: RunQuery, *, with_choices: bool = False) -> dict[str, Any]:
    """One page of runs with the total; with ``with_choices``, also the values each filter
    can take (the runs page's menus; it costs a pass over every run's hyperparameters)."""
    query.check()
    where = listing.RunFilter(
        dataset=query.dataset,
        model=query.model,
        status=query.status,
        sweep=query.sweep,
        params=query.params,
    )
    descending = query.sort.startswith("-")
    with transaction(engine, "listing runs") as session:
        total = listing.count_runs(session, where)
        runs = listing.page_of_runs(
            session,
            where,
            sort=query.sort.removeprefix("-"),
            descending=descending,
            limit=query.per_page,
            offset=(query.page - 1) * query.per_page,
        )
        choices = listing.filter_choices(session) if with_choices else {}
    return {
        "runs": runs,
        "total": total,
        "page": query.page,
        "per_page": query.per_page,
        "pages": max(1, math.ceil(total / query.per_page)),
        "sort": query.sort,
        "filters": {
            "dataset": query.dataset,
            "model": query.model,
            "status": query.status,
            "sweep": query.sweep,
            "params": query.params,
        },
        "choices": {**choices, "statuses": list(RUN_STATUSES), "sorts": list(SORTS)}
        if with_choices
        else None,
    }
