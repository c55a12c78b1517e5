"""The Python API: ``signdb.connect()`` and the handle it returns.

Everything the CLI does goes through these methods, so a notebook, a script
and ``signdb train`` write the same rows. In the examples, ``example_url`` is a
scratch database and ``example_images`` a small folder of two classes
(``circle``, ``square``; the doctest harness makes both).

Examples
--------
>>> db = signdb.connect(example_url)
>>> db.load(example_images, dataset="shapes", size=16).classes
['circle', 'square']
>>> [(c.label, c.name) for c in db.dataset("shapes").classes]
[(0, 'circle'), (1, 'square')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from signdb.config import database_url_from, read_database_urls_from, redact
from signdb.data.preprocess import Preprocessing
from signdb.data.samples import Rejection
from signdb.dataset import Dataset
from signdb.db.engine import get_engine, resolve_url, transaction
from signdb.evaluation import CompareResult, EvaluationResult, compare, evaluate, predict_files
from signdb.housekeeping import DatasetDeletion, RunDeletion, delete_dataset, delete_runs
from signdb.loading import LoadResult, load_dataset
from signdb.reporting import write_report
from signdb.store import datasets as ds_store
from signdb.tracking import Run, join_run, list_runs, show_run, start_run
from signdb.training import TrainResult, resume, train
from signdb.training.loop import Progress
from signdb.training.spec import ClassesArg, parse_classes, spec_from_arguments


def connect(url: str | None = None, *, read_url: str | Sequence[str] | None = None) -> Database:
    """A handle on one signdb database.

    ``url`` is any PostgreSQL URL; None reads ``$SIGNDB_DATABASE_URL`` and,
    without it, starts (or reuses) the embedded server, which is migrated on
    first use. Another server's schema must be current: an out-of-date one is
    refused with the command that upgrades it.

    ``read_url`` names hot standbys of that server (one URL, several separated
    by spaces, or a list; None reads ``$SIGNDB_READ_DATABASE_URL``): runs read
    their images from one of them, once it has replayed the run's split
    assignment, and write everything to ``url``.

    >>> signdb.connect(example_url).url.startswith("postgresql")
    True
    """
    from signdb.db import migrate

    raw = database_url_from(url)
    resolved, embedded = resolve_url(raw)
    engine = get_engine(resolved)
    if embedded:
        if migrate.current_revision(engine) != migrate.head_revision(engine):
            migrate.upgrade(engine)
    else:
        fix = "signdb db upgrade"
        if url:
            fix += f" --database-url '{redact(url)}'"
        migrate.require_current(engine, fix=fix)
    standbys = [get_engine(resolve_url(u)[0]) for u in read_database_urls_from(read_url)]
    return Database(engine, standbys)


class Database:
    """One database: load, train, evaluate and query; the CLI runs on these methods.

    >>> db = signdb.connect(example_url)
    >>> db.url.startswith("postgresql+psycopg://")
    True
    """

    def __init__(self, engine: Engine, standbys: Sequence[Engine] = ()) -> None:
        self.engine = engine
        #: Hot standbys of ``engine`` that runs read their images from.
        self.standbys = list(standbys)

    @property
    def url(self) -> str:
        """The database's URL, with any password hidden."""
        return redact(self.engine.url)

    def __repr__(self) -> str:
        return f"<signdb.Database {self.url}>"

    # -- datasets ------------------------------------------------------------------
    def load(
        self,
        path: str | Path,
        dataset: str,
        *,
        size: int = 64,
        color: str = "gray",
        class_names: Sequence[str] | None = None,
        strict: bool = False,
        workers: int = 2,
        progress: Callable[[int], None] | None = None,
        on_reject: Callable[[Rejection], None] | None = None,
        on_open: Callable[[Any], None] | None = None,
    ) -> LoadResult:
        """Load images from ``path`` (any supported format) into ``dataset``; safe to re-run.

        >>> db.load(example_images, dataset="shapes", size=16).added  # already there
        0
        """
        prep = Preprocessing(size=size, color=color)
        return load_dataset(
            self.engine,
            path,
            dataset,
            prep,
            class_names=class_names,
            strict=strict,
            workers=workers,
            progress=progress,
            on_reject=on_reject,
            on_open=on_open,
        )

    def dataset(self, name: str) -> Dataset:
        """The dataset called ``name`` (a clear error if there is none).

        >>> db.dataset("shapes")
        <Dataset 'shapes': 24 images, 2 classes>
        """
        return Dataset(self.engine, name)

    def datasets(self) -> list[Dataset]:
        """Every dataset, by name.

        >>> [d.name for d in db.datasets()]
        ['shapes']
        """
        with transaction(self.engine, "listing datasets") as session:
            names = [s.name for s in ds_store.list_summaries(session)]
        return [Dataset(self.engine, name) for name in names]

    # -- training ------------------------------------------------------------------
    def train(
        self,
        dataset: str,
        model: str = "logreg",
        *,
        classes: ClassesArg = (0, 1),
        seed: int = 42,
        test_fraction: float = 0.15,
        val_fraction: float = 0.0,
        split: str = "auto",
        name: str | None = None,
        engine: str = "numpy",
        device: str = "auto",
        cache: str = "auto",
        eval_every: int | None = None,
        checkpoint_every: int | None = None,
        progress: Progress | None = None,
        **hyperparams: Any,
    ) -> TrainResult:
        """Train a built-in model, as ``signdb train`` does; the defaults are the paper's run.

        ``classes`` takes names or labels, or ``"all"``; ``hyperparams`` go to
        the model (``lr=0.01``, ``iterations=150``, ``hidden=[64]``, ...);
        ``engine="torch"`` trains ``mlp`` and ``cnn`` with PyTorch on ``device``.

        >>> result = db.train("shapes", "softmax", classes="all", iterations=20)
        >>> result.status, result.test_accuracy is not None
        ('succeeded', True)
        """
        spec = spec_from_arguments(
            dataset,
            model,
            classes=classes,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            split=split,
            name=name,
            engine=engine,
            device=device,
            cache=cache,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            **hyperparams,
        )
        return train(self.engine, spec, progress=progress, standbys=self.standbys)

    def submit(
        self,
        dataset: str,
        model: str = "logreg",
        *,
        queue: str = "default",
        priority: int = 0,
        **train_args: Any,
    ) -> int:
        """Queue a run for ``signdb worker`` (what ``signdb submit`` does); returns its id.

        Takes :meth:`train`'s arguments, checked the same way: bad input queues
        nothing. Higher ``priority`` runs first; workers take the queues they
        were started with.

        >>> run_id = db.submit("shapes", classes="circle,square", iterations=5, queue="cpu")
        >>> db.run(run_id)["status"]
        'queued'
        """
        from signdb.queue import submit

        spec = spec_from_arguments(dataset, model, **train_args)
        return submit(self.engine, spec, queue=queue, priority=priority)

    def resume(self, run_id: int, *, progress: Progress | None = None) -> TrainResult:
        """Continue an interrupted or failed built-in run from its last checkpoint.

        >>> db.resume(db.runs()[-1]["run_id"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        signdb.errors.InvalidArgument: run ... already succeeded; nothing to resume
        """
        return resume(self.engine, run_id, progress=progress, standbys=self.standbys)

    def start_run(
        self,
        dataset: str,
        model: str,
        *,
        classes: ClassesArg = None,
        params: dict[str, Any] | None = None,
        seed: int = 42,
        test_fraction: float = 0.15,
        val_fraction: float = 0.0,
        split: str = "auto",
        name: str | None = None,
        cache: str = "auto",
        world_size: int = 1,
    ) -> Run:
        """A run for your own training code; use it as a context manager.

        ``model`` is free text (``"torch:resnet18"``); ``params`` are stored as
        the run's hyperparameters. The dataset, classes and fractions are
        checked, and the split assigned, before the run row is written.
        ``world_size`` > 1 starts it as rank 0 of that many processes, which
        open it with :meth:`join_run` (``signdb.torch.distributed_run`` does both).

        >>> with db.start_run("shapes", "my-model", params={"lr": 0.1}) as run:
        ...     X, y, ids = run.arrays("train")
        ...     run.log(0, loss=0.7)
        >>> X.shape[1:], run.status
        ((16, 16, 1), 'succeeded')
        """
        return start_run(
            self.engine,
            dataset=dataset,
            model=model,
            classes=parse_classes(classes),
            params=params,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            split=split,
            name=name,
            cache=cache,
            world_size=world_size,
            standbys=self.standbys,
        )

    def join_run(self, run_id: int, *, rank: int, world_size: int, cache: str = "auto") -> Run:
        """Run ``run_id``, which rank 0 started with ``world_size=world_size``, as rank ``rank``.

        It reads like the run rank 0 holds (``RunDataset`` gives it this rank's
        shard); its ``log``, ``save_weights`` and ``log_predictions`` do nothing,
        since rank 0 records the run. An exception leaving its ``with`` block
        marks the run failed, naming the rank.

        >>> with db.start_run("shapes", "doc:ranks", world_size=2) as run:
        ...     with db.join_run(run.id, rank=1, world_size=2) as other:
        ...         other.log(0, loss=1.0)  # rank 0 logs; this does nothing
        ...     run.log(0, loss=0.5)
        >>> db.run(run.id)["status"], other.writes
        ('succeeded', False)
        """
        return join_run(
            self.engine,
            run_id,
            rank=rank,
            world_size=world_size,
            cache=cache,
            standbys=self.standbys,
        )

    # -- results -------------------------------------------------------------------
    def evaluate(
        self,
        run_id: int,
        *,
        split: str = "test",
        thresholds: str = "0:1:0.01",
        bootstrap: int = 1000,
    ) -> EvaluationResult:
        """Score a trained run's split and replace its predictions, evaluation rows, scores
        (with ``bootstrap`` resamples' 95% intervals; 0 for none) and curves.

        >>> oldest = db.runs()[-1]["run_id"]  # the example database's softmax run
        >>> result = db.evaluate(oldest)
        >>> result.predictions > 0, sorted(result.scores)[:3]
        (True, ['accuracy', 'average_precision', 'balanced_accuracy'])
        >>> low, high = result.scores["accuracy"]["ci_low"], result.scores["accuracy"]["ci_high"]
        >>> low <= result.scores["accuracy"]["value"] <= high
        True
        """
        return evaluate(
            self.engine, run_id, split=split, thresholds=thresholds, bootstrap=bootstrap
        )

    def compare(
        self, run_a: int, run_b: int, *, split: str = "test", bootstrap: int = 1000
    ) -> CompareResult:
        """Two evaluated runs on the same ``split`` images: McNemar's exact test and a
        paired-bootstrap 95% interval for their accuracy difference.

        >>> a, b = [r["run_id"] for r in db.runs()[-2:]]  # the example database's two runs
        >>> _ = [db.evaluate(run, split="test") for run in (a, b)]
        >>> db.compare(a, b).runs == [a, b]
        True
        """
        return compare(self.engine, run_a, run_b, split=split, bootstrap=bootstrap)

    def predict(self, run_id: int, paths: Iterable[str | Path]) -> list[dict[str, Any]]:
        """Class and probabilities for image files, with a built-in run's stored weights.

        >>> image = next((example_images / "square").iterdir())
        >>> [p["class"] for p in db.predict(db.runs()[-1]["run_id"], [image])]
        ['square']
        """
        return predict_files(self.engine, run_id, list(paths))

    def report(self, run_id: int, out_dir: str | Path, *, threshold: float = 0.5) -> Path:
        """Write a static HTML report of a run into ``out_dir``; returns its index.html.

        >>> import tempfile
        >>> db.report(db.runs()[-1]["run_id"], tempfile.mkdtemp()).name
        'index.html'
        """
        return write_report(self.engine, run_id, out_dir, threshold=threshold)

    def runs(self, *, dataset: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Runs as ``run_summary`` shows them, newest first.

        >>> "softmax" in {r["model"] for r in db.runs()}
        True
        """
        return list_runs(self.engine, dataset=dataset, limit=limit)

    def run(self, run_id: int) -> dict[str, Any]:
        """Everything ``run_summary`` holds about one run.

        >>> db.run(db.runs()[-1]["run_id"])["status"]
        'succeeded'
        """
        return show_run(self.engine, run_id)

    def delete_runs(
        self, run_ids: int | Iterable[int], *, force: bool = False, dry_run: bool = False
    ) -> RunDeletion:
        """Delete runs with all their rows, in one transaction (``signdb runs delete``).

        A running run is refused, and a sweep's run unless ``force``; ``dry_run``
        only counts what would go.

        >>> run_id = db.train("shapes", "softmax", classes="all", iterations=2).run_id
        >>> db.delete_runs(run_id).rows["runs"]
        1
        """
        return delete_runs(self.engine, run_ids, force=force, dry_run=dry_run)

    def delete_dataset(
        self, name: str, *, with_runs: bool = False, dry_run: bool = False
    ) -> DatasetDeletion:
        """Delete a dataset with its classes and images (``signdb datasets delete``); with
        ``with_runs`` also the runs and sweeps that use it, else those make it refuse.

        >>> db.delete_dataset("shapes", dry_run=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        signdb.errors.InUse: dataset 'shapes' is used by ... runs (...); ...
        """
        return delete_dataset(self.engine, name, with_runs=with_runs, dry_run=dry_run)
