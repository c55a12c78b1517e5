"""``signdb train``: train, resume, and rebuild a trained model from the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument
from signdb.ml import build_model
from signdb.ml.base import Classifier
from signdb.results import Result
from signdb.store import datasets as ds_store
from signdb.store import runs as run_store
from signdb.store import weights as weight_store
from signdb.tracking import Run, reopen_run, run_classes, start_run
from signdb.training.loop import LoopOutcome, Progress, train_loop
from signdb.training.spec import TrainerSettings, TrainSpec


@dataclass
class TrainResult(Result):
    """How a training run ended, with its headline accuracies.

    >>> result = db.train("shapes", "logreg", classes="circle,square", iterations=5)
    >>> result.status, result.steps
    ('succeeded', 5)
    """

    run_id: int
    status: str
    train_accuracy: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    steps: int
    final_cost: float | None


RESUME_HINT = "resume with `signdb train --resume {run_id}`"


def prepare_model(engine: Engine, spec: TrainSpec) -> Classifier:
    """Build and initialise the model before any row is written: bad input writes nothing."""
    model = build_model(spec.model, engine=spec.engine, seed=spec.seed, **spec.hyperparams)
    _place(model, spec.engine, spec.trainer.device)
    with transaction(engine, "checking the training request") as session:
        ds = ds_store.get_dataset(session, spec.dataset)
        labels = ds_store.label_counts(session, ds.id)
        names = ds_store.class_names(session, ds.id)
    classes = run_classes(spec.classes, names, labels, spec.dataset)
    model.initialize(ds.preprocessing.shape, classes)  # validates the hyperparameters
    return model


def start_spec_run(engine: Engine, spec: TrainSpec, model: Classifier, **extra: Any) -> Run:
    """The run ``spec`` describes, for ``model`` from :func:`prepare_model`, started.

    ``extra`` goes to :func:`~signdb.tracking.start_run` as it is (a sweep's
    ``pool``, ``trial`` and ``resume_hint``).
    """
    return start_run(
        engine,
        dataset=spec.dataset,
        model=spec.model,
        classes=spec.classes,
        params=model.get_params(),
        seed=spec.seed,
        test_fraction=spec.test_fraction,
        val_fraction=spec.val_fraction,
        split=spec.split,
        name=spec.name,
        engine_name=spec.engine,
        trainer=spec.trainer.as_dict(),
        cache=spec.trainer.cache,
        signals="flag",
        **{"resume_hint": RESUME_HINT, **extra},
    )


def train(
    engine: Engine,
    spec: TrainSpec,
    progress: Progress | None = None,
    *,
    standbys: Sequence[Engine] = (),
) -> TrainResult:
    """Validate, create the run, train it, and record the outcome.

    ``standbys``: hot standbys to read the images from (writes go to ``engine``).
    """
    model = prepare_model(engine, spec)
    run = start_spec_run(engine, spec, model, standbys=standbys)
    return _train(run, model, spec.trainer, 0, progress)


def resume(
    engine: Engine,
    run_id: int,
    progress: Progress | None = None,
    *,
    engine_name: str | None = None,
    standbys: Sequence[Engine] = (),
) -> TrainResult:
    """Continue an interrupted or failed run from its last checkpoint.

    ``engine_name``, when given, must be the engine the run was trained on: a
    checkpoint of one engine is not a model of the other.
    """
    with transaction(engine, f"reading run {run_id}") as session:
        record = run_store.get_run(session, run_id)
        settings = TrainerSettings.from_dict(record.trainer)
    _check_engine(record, engine_name)
    run, step, tensors = reopen_run(
        engine, run_id, cache=settings.cache, resume_hint=RESUME_HINT, standbys=standbys
    )
    model = _model_of(run.record, run.data.shape, settings.device)
    if tensors is not None:
        model.load_state_dict(tensors)
    return _train(run, model, settings, step, progress)


def _train(
    run: Run, model: Classifier, settings: TrainerSettings, step: int, progress: Progress | None
) -> TrainResult:
    with run:
        outcome: LoopOutcome = train_loop(run, model, settings, start_step=step, progress=progress)
    return TrainResult(
        run.id,
        run.status,
        outcome.train_accuracy,
        outcome.val_accuracy,
        outcome.test_accuracy,
        outcome.steps,
        outcome.final_cost,
    )


def _check_engine(record: run_store.Run, wanted: str | None) -> None:
    if record.engine not in ("numpy", "torch"):
        raise InvalidArgument(
            f"run {record.id} was logged by your own code (model {record.model!r}); only "
            "built-in runs can be resumed, evaluated or predicted with by signdb"
        )
    if wanted is not None and wanted != record.engine:
        raise InvalidArgument(
            f"run {record.id} was trained on the {record.engine} engine; it resumes on the "
            f"{record.engine} engine only (drop --engine {wanted})"
        )


def _place(model: Classifier, engine: str, device: str) -> None:
    if engine == "torch":
        model.set_device(device)
    elif device not in ("auto", "cpu"):
        raise InvalidArgument(f"--device {device} needs --engine torch; numpy trains on the CPU")


def _model_of(
    record: run_store.Run, shape: tuple[int, int, int], device: str = "auto"
) -> Classifier:
    _check_engine(record, None)
    model = build_model(record.model, engine=record.engine, **record.hyperparams)
    _place(model, record.engine, device)
    model.initialize(shape, record.classes)
    return model


def load_model(engine: Engine, run_id: int) -> tuple[run_store.Run, Classifier]:
    """Rebuild a run's model from its final stored weights."""
    with transaction(engine, f"loading the weights of run {run_id}") as session:
        record = run_store.get_run(session, run_id)
        _check_engine(record, None)
        dataset = ds_store.get_dataset(session, record.dataset)
        step = weight_store.latest_step(session, run_id, final_only=True)
        if step is None:
            raise InvalidArgument(
                f"run {run_id} has no final weights (status {record.status}); "
                f"finish it with `signdb train --resume {run_id}`"
            )
        _, tensors = weight_store.load_tensors(session, run_id, step, optimizer=False)
    model = _model_of(record, dataset.preprocessing.shape)
    model.load_state_dict(tensors)
    return record, model
