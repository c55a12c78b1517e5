"""``signdb runs delete``: remove runs with everything they own, in one transaction.

Refused, with nothing deleted: a run that is running (its heartbeat is fresh)
or queued, a sweep's run unless ``force`` (it is a trial of that sweep), a run a
model alias serves (the alias is named), and a role that may not write.

Examples
--------
>>> run_id = db.train("shapes", "softmax", classes="all", iterations=2).run_id
>>> plan = delete_runs(db.engine, [run_id], dry_run=True)
>>> plan.deleted, plan.rows["weights"] > 0
(False, True)
>>> delete_runs(db.engine, [run_id]).deleted
True
>>> delete_runs(db.engine, [run_id])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.NotFound: no run with id ...; `signdb runs list` shows the runs
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InUse, InvalidArgument, NotFound
from signdb.results import Result, not_in_json
from signdb.store import aliases as alias_store
from signdb.store import deletion
from signdb.store.deletion import LockedRun


@dataclass
class RunDeletion(Result):
    """What ``runs delete`` removed (or, with ``dry_run``, would remove): rows by table.

    >>> run_id = db.train("shapes", "softmax", classes="all", iterations=2).run_id
    >>> gone = db.delete_runs(run_id)
    >>> gone.runs == [run_id], gone.deleted, gone.rows["run_metrics"] > 0
    (True, True, True)
    """

    runs: list[int]
    deleted: bool
    rows: dict[str, int] = field(default_factory=dict)
    described: list[str] = not_in_json(default_factory=list)  # one line per run, for a prompt


def check_run_ids(run_ids: Any) -> list[int]:
    """Distinct positive run ids, in the order given."""
    if isinstance(run_ids, int | str):
        run_ids = [run_ids]
    out: list[int] = []
    for raw in run_ids:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = 0
        if isinstance(raw, bool) or value < 1 or str(raw).strip() != str(value):
            raise InvalidArgument(f"run ids are positive integers, got {raw!r}")
        if value not in out:
            out.append(value)
    if not out:
        raise InvalidArgument("name at least one run id; `signdb runs list` shows them")
    return out


def refusal(run: LockedRun, *, force: bool, aliases: list[str] = ()) -> str | None:
    """Why ``run`` may not be deleted now, or None."""
    if run.status in ("running", "queued"):
        return (
            f"run {run.id} is {run.status}; cancel it first (`signdb runs cancel {run.id}`, "
            "or Ctrl-C in the terminal that trains it), then delete it"
        )
    if aliases:
        names = ", ".join(repr(a) for a in aliases)
        return (
            f"run {run.id} is served as model {names}; point that alias at another run first "
            f"(`signdb models alias {aliases[0]} OTHER_RUN_ID`)"
        )
    if run.sweep is not None and not force:
        return (
            f"run {run.id} is trial {run.trial_number} of sweep {run.sweep!r}; deleting it "
            "leaves that trial without its run: pass --force to delete it anyway"
        )
    return None


def describe(run: LockedRun) -> str:
    sweep = f", trial {run.trial_number} of sweep {run.sweep!r}" if run.sweep else ""
    return f"run {run.id}: {run.model} on {run.dataset!r}, {run.status}{sweep}"


def delete_runs(
    engine: Engine, run_ids: Any, *, force: bool = False, dry_run: bool = False
) -> RunDeletion:
    """Delete ``run_ids`` and all their rows, or none of them (one transaction).

    Every id must exist and none may be refused (see the module); ``force``
    also deletes a sweep's runs. ``dry_run`` checks and counts, deleting nothing.
    """
    ids = check_run_ids(run_ids)
    with transaction(engine, "deleting runs") as session:
        locked = deletion.lock_runs(session, ids)
        missing = sorted(set(ids) - {r.id for r in locked})
        if missing:
            raise NotFound(
                f"no run with id {', '.join(map(str, missing))}; `signdb runs list` shows the runs"
            )
        reasons = [
            why
            for run in locked
            if (
                why := refusal(
                    run, force=force, aliases=alias_store.aliases_of_run(session, run.id)
                )
            )
        ]
        if reasons:
            raise InUse("; ".join(reasons) + "; nothing was deleted")
        result = RunDeletion(
            runs=ids,
            deleted=not dry_run,
            rows={"runs": len(ids), **deletion.count_run_rows(session, ids)},
            described=[describe(r) for r in locked],
        )
        if not dry_run:
            deletion.delete_runs(session, ids)
    return result
