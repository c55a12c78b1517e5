"""``signdb sweep create``: check a sweep's request, then make its Optuna study and settings row.

Everything is validated before a study exists: the model's parameter names,
each space, the sampler, the objective and the val split. The study then gets
its whole budget as WAITING trials, so workers only ever claim queued trials:

* ``grid``: one trial per point of the product of the choices, so every point
  runs exactly once however many workers there are (Optuna's GridSampler
  repeats points under concurrency: optuna#2039, #6073);
* ``tpe`` / ``random``: N empty trials, whose parameters the sampler draws when
  a worker claims one, so the sweep ends with exactly N trials
  (``MaxTrialsCallback`` overshoots by up to one trial per worker).

The signdb row is written last, in the transaction that holds the name's
lock: a sweep is usable only once complete, and a create that died half-way
is redone by the next one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from signdb.data.splits import SplitPlan, check_fractions, check_mode, plan_split
from signdb.db import sweep_storage
from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, SchemaOutOfDate
from signdb.ml import model_class
from signdb.ml.base import Classifier
from signdb.results import Result
from signdb.store import datasets as ds_store
from signdb.store import sweeps as sweep_store
from signdb.store.sweeps import Sweep
from signdb.sweeps.space import (
    OBJECTIVES,
    SAMPLERS,
    Space,
    check_names,
    grid_points,
    parse_params,
)
from signdb.tracking import run_classes

DEFAULT_TRIALS = 20
#: Optuna's MedianPruner: prune a trial whose best value so far is below the
#: median of the completed trials at the same epoch, once 5 trials completed.
MEDIAN_PRUNER = {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 1}
NO_PRUNER = {"kind": "none"}


@dataclass
class CreateResult(Result):
    """The sweep as created or reopened."""

    sweep: str
    trials: int
    space: dict[str, Any]
    fixed: dict[str, Any]
    sampler: str
    objective: str
    repeats: int
    created: bool


@dataclass(frozen=True)
class SweepRequest:
    """What ``sweep create`` was asked for, before validation."""

    name: str
    dataset: str
    model: str = "mlp"
    engine: str = "numpy"
    classes: Sequence[int | str] | None = (0, 1)
    params: Sequence[str] = ()
    trials: int | None = None
    repeats: int = 1
    sampler: str = "tpe"
    objective: str = "val_accuracy"
    seed: int = 42
    test_fraction: float = 0.15
    val_fraction: float = 0.15
    split: str = "auto"
    prune: bool = True
    heartbeat_seconds: int = sweep_storage.HEARTBEAT_SECONDS
    grace_seconds: int = sweep_storage.GRACE_SECONDS


def create_sweep(engine: Engine, request: SweepRequest) -> CreateResult:
    """Create the sweep, or reopen it when one of that name has the same settings."""
    sweep, points = _validate(engine, request)
    with transaction(engine, f"creating sweep {request.name!r}") as session:
        if not sweep_storage.schema_exists(session.connection()):
            raise SchemaOutOfDate("the database has no sweep tables; run `signdb db upgrade`")
        sweep_store.lock_name(session, sweep.name)
        existing = sweep_store.find_sweep(session, sweep.name)
        if existing is not None:
            _check_same(existing, sweep)
            return _result(sweep, created=False)
        _make_study(engine, sweep, points)
        sweep_store.create_sweep(session, sweep)
    return _result(sweep, created=True)


def _result(sweep: Sweep, *, created: bool) -> CreateResult:
    return CreateResult(
        sweep.name,
        sweep.trials,
        sweep.space,
        sweep.fixed,
        sweep.sampler,
        sweep.objective,
        sweep.repeats,
        created,
    )


def _make_study(engine: Engine, sweep: Sweep, points: list[dict[str, str]] | None) -> None:
    import optuna

    storage = sweep_storage.make_storage(engine.url)
    try:
        with (
            sweep_storage.optuna_errors(f"creating the study of sweep {sweep.name!r}"),
            sweep_storage.quiet(),
        ):
            # A study without a signdb row is what a create killed half-way left.
            if sweep.name in {s.study_name for s in storage.get_all_studies()}:
                optuna.delete_study(study_name=sweep.name, storage=storage)
            study = optuna.create_study(
                study_name=sweep.name, storage=storage, direction="maximize"
            )
            study.set_user_attr("signdb", sweep.as_dict())
            for params in points or [{}] * sweep.trials:
                study.enqueue_trial(params, skip_if_exists=False)
    finally:
        storage.engine.dispose()


def _check_same(existing: Sweep, wanted: Sweep) -> None:
    have, want = Sweep.as_dict(existing), wanted.as_dict()
    differ = [k for k in want if _comparable(have[k]) != _comparable(want[k])]
    if differ:
        shown = "; ".join(f"{k} is {have[k]!r}, asked {want[k]!r}" for k in differ)
        raise InvalidArgument(
            f"sweep {wanted.name!r} already exists with other settings ({shown}); "
            f"reopen it with the same flags, or choose another name"
        )


def _comparable(value: Any) -> Any:
    """Settings as compared on reopening: numbers as floats (jsonb rewrites 1e30 as 10**30)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _validate(engine: Engine, request: SweepRequest) -> tuple[Sweep, list[dict[str, str]] | None]:
    _check_settings(request)
    space, fixed = parse_params(request.params)
    cls = model_class(request.model, request.engine)
    if "seed" in space or "seed" in fixed:
        raise InvalidArgument(
            "--param seed is not searched: repeat r of every trial uses seed --seed + r "
            "for its split and its model (see --repeats)"
        )
    check_names([*space, *fixed], [n for n in cls.param_names() if n != "seed"], request.model)
    if not space:
        raise InvalidArgument(
            "a sweep needs at least one searched parameter, e.g. --param lr=loguniform:1e-4:1e-1"
        )
    points = _points(request, space)
    trials = len(points) if points is not None else request.trials or DEFAULT_TRIALS
    _positive("--trials", trials)
    ds, chosen, plan = _plan_split(engine, request)
    for candidate in _corners(space, fixed, points):
        _check_model(cls, candidate, ds.preprocessing.shape, chosen)
    encoded = None
    if points is not None:  # what Optuna holds for each grid point's fixed params
        encoded = [{k: space[k].encode(v) for k, v in p.items()} for p in points]
    sweep = Sweep(
        name=request.name,
        dataset_id=ds.id,
        model=request.model,
        engine=request.engine,
        classes=chosen,
        space={k: s.as_dict() for k, s in sorted(space.items())},
        fixed=fixed,
        sampler=request.sampler,
        objective=request.objective,
        trials=trials,
        repeats=request.repeats,
        seed=request.seed,
        test_fraction=plan.test_fraction,
        val_fraction=plan.val_fraction,
        split=plan.mode,
        pruner=MEDIAN_PRUNER if request.prune else NO_PRUNER,
        heartbeat_seconds=request.heartbeat_seconds,
        grace_seconds=request.grace_seconds,
    )
    return sweep, encoded


def _check_settings(request: SweepRequest) -> None:
    """The sweep's own settings, before any parameter or the database is read."""
    ds_store.check_name(request.name, "sweep name")
    if request.sampler not in SAMPLERS:
        raise InvalidArgument(
            f"--sampler must be one of {', '.join(SAMPLERS)}, got {request.sampler!r}"
        )
    if request.objective not in OBJECTIVES:
        raise InvalidArgument(
            f"--objective must be {' or '.join(OBJECTIVES)} (a sweep selects on the val "
            f"split, never on test), got {request.objective!r}"
        )
    _positive("--repeats", request.repeats)
    if request.heartbeat_seconds < 1 or request.grace_seconds < 2 * request.heartbeat_seconds:
        raise InvalidArgument(
            f"--grace-seconds must be at least twice --heartbeat-seconds, got "
            f"{request.grace_seconds} and {request.heartbeat_seconds}"
        )


def _plan_split(
    engine: Engine, request: SweepRequest
) -> tuple[ds_store.Dataset, list[int], SplitPlan]:
    """The dataset, its chosen classes and the split every repeat uses; val must exist."""
    check_fractions(request.test_fraction, request.val_fraction)
    check_mode(request.split)
    ds_store.check_seed(request.seed)
    with transaction(engine, "checking the sweep's dataset") as session:
        ds = ds_store.get_dataset(session, request.dataset)
        labels = ds_store.label_counts(session, ds.id)
        names = ds_store.class_names(session, ds.id)
        chosen = run_classes(request.classes, names, labels, request.dataset)
        total, with_split, fixed_val = ds_store.fixed_split_coverage(session, ds.id, chosen)
    plan = plan_split(
        request.split,
        seed=request.seed,
        test_fraction=request.test_fraction,
        val_fraction=request.val_fraction,
        images=total,
        with_split=with_split,
        fixed_val=fixed_val,
        what=f"dataset {request.dataset!r} for the chosen classes",
    )
    if plan.val_fraction <= 0 and not (plan.mode == "fixed" and fixed_val):
        raise InvalidArgument(
            "a sweep selects its configuration on the val split, never on test: give "
            "--val-fraction > 0 (e.g. --val-fraction 0.15)"
        )
    return ds, chosen, plan


def _points(request: SweepRequest, space: dict[str, Space]) -> list[dict[str, Any]] | None:
    """A grid sweep's points: all of them, or ``--trials`` of them drawn with the seed."""
    if request.sampler != "grid":
        return None
    points = grid_points(space)
    if request.trials is None or request.trials == len(points):
        return points
    _positive("--trials", request.trials)
    if request.trials > len(points):
        raise InvalidArgument(
            f"--trials {request.trials} is more than the grid's {len(points)} points; a grid "
            "runs each point once (use --repeats for more runs of each)"
        )
    keep = sorted(random.Random(request.seed).sample(range(len(points)), request.trials))
    return [points[i] for i in keep]


def _corners(
    space: dict[str, Space], fixed: dict[str, Any], points: list[dict] | None
) -> list[dict[str, Any]]:
    """Parameter sets that reach every choice and both ends of every range."""
    if points is not None:
        return [{**fixed, **p} for p in points]
    low = {k: (s.choices[0] if s.kind == "choice" else s.low) for k, s in space.items()}
    out = [{**fixed, **low}]
    for k, s in space.items():
        values = s.choices[1:] if s.kind == "choice" else [s.high]
        out += [{**fixed, **low, k: v} for v in values]
    return [
        {k: (int(v) if space.get(k) and space[k].kind == "int" else v) for k, v in c.items()}
        for c in out
    ]


def _check_model(
    cls: type[Classifier], params: dict[str, Any], shape: tuple[int, int, int], classes: list[int]
) -> None:
    try:
        cls(**params).initialize(shape, classes)
    except InvalidArgument as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
        raise InvalidArgument(f"the sweep would train {cls.name} with {shown}: {e}") from None


def _positive(flag: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{flag} must be a whole number >= 1, got {value!r}")
