"""``signdb datasets delete``: remove a dataset with its classes and images.

A dataset that runs or sweeps use is refused unless ``with_runs``, which
deletes them too (under the rules of ``runs delete``, except that a sweep's
runs go with their sweep). All of it is one transaction. A sweep's Optuna
study is deleted after that commits, through Optuna's own API: a study whose
sweep row is gone is invisible to every view and is replaced when a sweep of
that name is created again, so a failure there loses nothing.

Examples
--------
>>> _ = db.load(example_images, dataset="shapes-copy", size=16)
>>> delete_dataset(db.engine, "shapes-copy", dry_run=True).images
24
>>> delete_dataset(db.engine, "shapes-copy").deleted
True
>>> delete_dataset(db.engine, "shapes", dry_run=True)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.InUse: dataset 'shapes' is used by ... runs (...); ... or pass --with-runs ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InUse, SignDBError
from signdb.housekeeping.runs import refusal
from signdb.results import Result
from signdb.store import datasets as ds_store
from signdb.store import deletion


@dataclass
class DatasetDeletion(Result):
    """What ``datasets delete`` removed (or, with ``dry_run``, would remove).

    >>> _ = db.load(example_images, dataset="shapes-to-drop", size=8)
    >>> _ = db.train("shapes-to-drop", "softmax", classes="all", iterations=2)
    >>> plan = db.delete_dataset("shapes-to-drop", with_runs=True, dry_run=True)
    >>> plan.dataset, plan.images, plan.classes, plan.deleted, len(plan.runs)
    ('shapes-to-drop', 24, 2, False, 1)
    >>> db.delete_dataset("shapes-to-drop", with_runs=True).deleted
    True
    """

    dataset: str
    deleted: bool
    images: int = 0
    classes: int = 0
    runs: list[int] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # the runs' rows, by table
    warnings: list[str] = field(default_factory=list)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:10]))
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def delete_dataset(
    engine: Engine, name: str, *, with_runs: bool = False, dry_run: bool = False
) -> DatasetDeletion:
    """Delete dataset ``name`` (and, with ``with_runs``, its runs and sweeps), or nothing."""
    with transaction(engine, f"deleting dataset {name!r}") as session:
        dataset = ds_store.get_dataset(session, name)
        deletion.lock_dataset_for_delete(session, dataset.id)
        runs = deletion.lock_dataset_runs(session, dataset.id)
        sweeps = deletion.dataset_sweeps(session, dataset.id)
        if (runs or sweeps) and not with_runs:
            used = [f"{len(runs)} run{'s' * (len(runs) != 1)} ({_ids([r.id for r in runs])})"]
            if sweeps:
                used.append(f"sweep{'s' * (len(sweeps) != 1)} {', '.join(sweeps)}")
            raise InUse(
                f"dataset {name!r} is used by {' and '.join(used) if runs else used[-1]}; "
                "delete those first (`signdb runs delete ID...`), or pass --with-runs to delete "
                "them with the dataset"
            )
        reasons = [why for run in runs if (why := refusal(run, force=True))]
        if reasons:
            raise InUse("; ".join(reasons) + "; nothing was deleted")
        run_ids = [r.id for r in runs]
        result = DatasetDeletion(
            dataset=name,
            deleted=not dry_run,
            runs=run_ids,
            sweeps=sweeps,
            rows={"runs": len(run_ids), **deletion.count_run_rows(session, run_ids)},
            **deletion.count_dataset_rows(session, dataset.id),
        )
        if dry_run:
            return result
        deletion.delete_runs(session, run_ids)
        deletion.delete_sweeps(session, sweeps)
        deletion.delete_dataset(session, dataset.id)
    result.warnings = _delete_studies(engine, sweeps)
    return result


def _delete_studies(engine: Engine, sweeps: list[str]) -> list[str]:
    if not sweeps:
        return []
    import optuna

    from signdb.db import sweep_storage

    warnings = []
    storage = sweep_storage.make_storage(engine.url)
    try:
        for sweep in sweeps:
            try:
                with (
                    sweep_storage.quiet(),
                    sweep_storage.optuna_errors(f"deleting the study of sweep {sweep!r}"),
                ):
                    optuna.delete_study(study_name=sweep, storage=storage)
            except KeyError:
                pass  # no study: a sweep whose create was cut short
            except SignDBError as e:
                warnings.append(
                    f"sweep {sweep!r} is deleted but its Optuna study stays ({e}); it is "
                    "invisible to signdb and replaced if a sweep of that name is created again"
                )
    finally:
        storage.engine.dispose()  # its pool would outlive the command otherwise
    return warnings
