"""signdb as a library: the public names, start_run's life cycle and its refusals."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import psycopg
import pytest

import signdb
from signdb.errors import InvalidArgument, NotFound, RunClosed
from tests.helpers import named_tree


@pytest.fixture
def db(db_url, tmp_path):
    handle = signdb.connect(db_url)
    handle.load(named_tree(tmp_path / "photos", ["cat", "coffee", "rocket"], 12), "photos", size=16)
    return handle


def _count(pg: psycopg.Connection, table: str, run_id: int | None = None) -> int:
    where = "" if run_id is None else f" WHERE run_id = {int(run_id)}"
    return pg.execute(f"SELECT count(*) FROM signdb.{table}{where}").fetchone()[0]  # noqa: S608


# -- public names ---------------------------------------------------------------------
def test_all_is_exactly_the_public_names():
    for name in signdb.__all__:  # resolving every name loads it into the namespace
        getattr(signdb, name)
    public = {
        n for n, v in vars(signdb).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public | {"__version__"} == set(signdb.__all__)
    assert [n for n in dir(signdb) if not n.startswith("_")] == sorted(public)


def test_every_public_callable_has_a_running_example():
    missing = []
    for name in signdb.__all__:
        obj = getattr(signdb, name)
        if not callable(obj):
            continue
        if ">>>" not in (obj.__doc__ or ""):
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member) or attr == "as_dict":
                    continue
                if ">>>" not in (member.__doc__ or ""):
                    missing.append(f"{name}.{attr}")
    assert missing == []


# -- the life cycle of a run ------------------------------------------------------------
def test_a_block_that_ends_normally_succeeds_and_lands_in_the_views(db, pg):
    with db.start_run("photos", "torch:resnet18", classes="all", params={"lr": 0.1}) as run:
        X, y, ids = run.arrays("test")
        for step in range(5):
            run.log(step, loss=1.0 / (step + 1), val_accuracy=0.5)
        proba = np.eye(3)[y] * 0.8 + 0.2 / 3  # a model that is right on every image
        assert run.log_predictions("test", ids, proba) == 3
    summary = pg.execute(
        "SELECT status, model, hyperparams, engine FROM signdb.run_summary WHERE run_id = %s",
        [run.id],
    ).fetchone()
    assert summary == ("succeeded", "torch:resnet18", {"lr": 0.1}, "external")
    curves = pg.execute(
        "SELECT count(*) FROM signdb.learning_curves WHERE run_id = %s AND metric = 'loss'",
        [run.id],
    ).fetchone()[0]
    assert curves == 5
    (rank, f1) = pg.execute(
        "SELECT rank, test_f1 FROM signdb.leaderboard WHERE run_id = %s", [run.id]
    ).fetchone()
    assert rank == 1 and f1 == 1.0


def test_an_exception_fails_the_run_with_its_text_and_propagates(db, pg):
    with pytest.raises(ZeroDivisionError):
        with db.start_run("photos", "mine", classes="cat,rocket") as run:
            run.log(0, loss=0.5)
            1 / 0  # noqa: B018
    status, error = pg.execute(
        "SELECT status, error FROM signdb.runs WHERE id = %s", [run.id]
    ).fetchone()
    assert status == "failed" and error == "ZeroDivisionError: division by zero"
    assert _count(pg, "run_metrics", run.id) == 1  # what was logged before is kept
    with pytest.raises(RunClosed, match=f"run {run.id} has ended \\(failed\\)"):
        run.log(1, loss=0.1)
    with pytest.raises(RunClosed):
        run.arrays("train")


@pytest.mark.parametrize(
    "kw, error, message",
    [
        (dict(dataset="nope"), NotFound, "no dataset named 'nope'"),
        (dict(classes="cat,unicorn"), InvalidArgument, "class 'unicorn' is not in dataset"),
        (dict(test_fraction=0.6, val_fraction=0.4), InvalidArgument, "leaves no images"),
        (dict(val_fraction=0.001), InvalidArgument, "the val split of 'photos'"),
        (dict(model=""), InvalidArgument, "model must be a non-empty name"),
    ],
)
def test_bad_requests_create_no_run(db, pg, kw, error, message):
    args = {"dataset": "photos", "model": "m", **kw}
    with pytest.raises(error, match=message):
        db.start_run(args.pop("dataset"), args.pop("model"), **args)
    assert _count(pg, "runs") == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ids, k: np.full((len(ids), k + 1), 1 / (k + 1)), "must have shape"),
        (lambda ids, k: np.full((len(ids),), 0.5), "must have shape"),
        (lambda ids, k: _poke(np.full((len(ids), k), 1 / k), np.nan), "is nan"),
        (lambda ids, k: _poke(np.full((len(ids), k), 1 / k), -0.2), "is -0.2"),
        (lambda ids, k: np.full((len(ids), k), 0.5), "sum to 1.5"),
    ],
)
def test_log_predictions_refuses_bad_probabilities_and_writes_nothing(db, pg, make, message):
    with db.start_run("photos", "m", classes="all") as run:
        _, _, ids = run.arrays("test")
        with pytest.raises(InvalidArgument, match=message):
            run.log_predictions("test", ids, make(ids, 3))
        assert _count(pg, "predictions", run.id) == 0
        assert _count(pg, "evaluations", run.id) == 0


def _poke(proba: np.ndarray, value: float) -> np.ndarray:
    proba[1, 2] = value
    return proba


def test_log_predictions_names_the_first_image_not_in_the_split(db, pg):
    with db.start_run("photos", "m", classes="all") as run:
        _, _, train_ids = run.arrays("train")
        _, _, test_ids = run.arrays("test")
        ids = np.concatenate([test_ids, train_ids[:2]])
        with pytest.raises(InvalidArgument, match=f"image {train_ids[0]} is not in the test split"):
            run.log_predictions("test", ids, np.full((len(ids), 3), 1 / 3))
        assert _count(pg, "predictions", run.id) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss=float("nan")), "is nan"),
        (dict(loss=float("inf")), "is inf"),
        (dict(loss="high"), "must be a number, got str"),
        (dict(loss=None), "must be a number, got NoneType"),
    ],
)
def test_log_refuses_what_is_not_a_finite_number(db, kwargs, message):
    with db.start_run("photos", "m", classes="all") as run:
        with pytest.raises(InvalidArgument, match=message):
            run.log(0, **kwargs)
        with pytest.raises(InvalidArgument, match="step must be an integer"):
            run.log(-1, loss=0.5)


def test_two_threads_may_log_on_one_run(db, pg):
    """Logging is safe from several threads: every point lands exactly once."""
    with db.start_run("photos", "m", classes="all") as run:

        def worker(name: str) -> None:
            for step in range(5000):
                run.log(step, **{name: float(step)})

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = dict(
        pg.execute(
            "SELECT name, count(DISTINCT step) FROM signdb.run_metrics WHERE run_id = %s "
            "GROUP BY name",
            [run.id],
        ).fetchall()
    )
    assert rows == {"a": 5000, "b": 5000} and _count(pg, "run_metrics", run.id) == 10000


def test_log_predictions_writes_what_evaluate_writes(db, pg):
    """A user's run scored with the same probabilities gets the same rows as `evaluate`."""
    from signdb.training import load_model

    trained = db.train("photos", "logreg", classes="cat,rocket", iterations=30)
    db.evaluate(trained.run_id)
    _, model = load_model(db.engine, trained.run_id)
    with db.start_run("photos", "copy-of-logreg", classes="cat,rocket") as run:
        X, _, ids = run.arrays("test")
        pixels = np.rint(X * 255).astype(np.uint8)
        run.log_predictions("test", ids, model.predict_proba_pixels(pixels))

    def rows(run_id: int) -> list[tuple]:
        return pg.execute(
            "SELECT threshold, tp, fp, tn, fn, f1 FROM signdb.evaluations WHERE run_id = %s "
            "ORDER BY threshold",
            [run_id],
        ).fetchall()

    assert rows(run.id) == rows(trained.run_id) and len(rows(run.id)) == 101
    headline = "SELECT test_precision, test_recall, test_f1 FROM signdb.runs WHERE id = %s"
    assert (
        pg.execute(headline, [run.id]).fetchone()
        == pg.execute(headline, [trained.run_id]).fetchone()
    )


def test_dataset_handle(db):
    ds = db.dataset("photos")
    assert [(c.label, c.name) for c in ds.classes] == [(0, "cat"), (1, "coffee"), (2, "rocket")]
    counts = ds.counts(val_fraction=0.2)
    assert set(counts) == {"cat", "coffee", "rocket"}
    assert all(c["train"] + c["val"] + c["test"] == c["images"] == 12 for c in counts.values())
    with pytest.raises(NotFound, match="no dataset named 'other'"):
        db.dataset("other")


def test_connect_refuses_an_out_of_date_schema_with_the_fix(empty_db_url):
    from signdb.errors import SchemaOutOfDate

    with pytest.raises(SchemaOutOfDate, match="run `signdb db upgrade --database-url"):
        signdb.connect(empty_db_url)
