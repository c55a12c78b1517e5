"""Training runs against a real database: lifecycle, reproducibility, resume, caching."""

from __future__ import annotations

import os
import signal

import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb import training
from signdb.db.engine import get_engine, transaction
from signdb.errors import InvalidArgument, NotFound, TrainingError
from signdb.store import weights as weight_store
from tests.helpers import train_spec


def _weights(url: str, run_id: int) -> dict[str, np.ndarray]:
    with transaction(get_engine(url)) as session:
        step, tensors = weight_store.load_tensors(session, run_id)
    return tensors


def _metrics(pg: psycopg.Connection, run_id: int) -> list[tuple]:
    return pg.execute(
        "SELECT step, name, value FROM signdb.run_metrics WHERE run_id = %s ORDER BY name, step",
        [run_id],
    ).fetchall()


@pytest.fixture
def conn(trained_url: str):
    info = make_url(trained_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as c:
        yield c


def _train(url: str, **kw) -> training.TrainResult:
    return training.train(get_engine(url), train_spec(**kw))


def test_seed_experiment_lands_near_the_reference(trained_url, conn):
    result = _train(trained_url, dataset="sld")
    assert result.status == "succeeded"
    assert result.test_accuracy >= 0.85  # the seed reports ~0.93; issue target 0.85
    row = conn.execute(
        "SELECT status, model, classes, hyperparams, seed, train_size, test_size, dataset_fingerprint, "
        "code_version, total_steps, steps_done FROM signdb.runs WHERE id = %s",
        [result.run_id],
    ).fetchone()
    status, model, classes, hp, seed, n_train, n_test, fp, version, total, done = row
    assert (status, model, classes, seed) == ("succeeded", "logreg", [0, 1], 42)
    assert hp["lr"] == 0.01 and hp["iterations"] == 150
    assert n_train + n_test == 411  # 205 zeros + 206 ones
    assert len(fp) == 64 and version.startswith("signdb ")
    assert total == done == 150
    names = dict(
        conn.execute(
            "SELECT name, count(*) FROM signdb.run_metrics WHERE run_id = %s GROUP BY name",
            [result.run_id],
        ).fetchall()
    )
    assert names["cost"] == 150 and names["train_accuracy"] == 150
    assert names["test_accuracy"] >= 10
    # Costs fall, as gradient descent should.
    costs = [v for _, n, v in _metrics(conn, result.run_id) if n == "cost"]
    assert costs[-1] < costs[0] / 10


def test_split_is_recorded_and_matches_the_sql_rule(trained_url, conn):
    run = _train(trained_url, dataset="mini", hyperparams={"iterations": 2}).run_id
    mismatched = conn.execute(
        "SELECT count(*) FROM signdb.run_images ri JOIN signdb.images i ON i.id = ri.image_id "
        "JOIN signdb.runs r ON r.id = ri.run_id "
        "WHERE ri.run_id = %s AND ri.split <> signdb.split_of(i.sha256, r.seed, r.test_fraction)",
        [run],
    ).fetchone()[0]
    assert mismatched == 0


def test_rerun_is_byte_identical(trained_url, conn):
    kw = dict(
        dataset="mini",
        model="mlp",
        classes=[0, 1, 2],
        hyperparams={"iterations": 3, "hidden": [16]},
    )
    a = _train(trained_url, **kw).run_id
    b = _train(trained_url, **kw).run_id
    wa, wb = _weights(trained_url, a), _weights(trained_url, b)
    assert wa.keys() == wb.keys()
    assert all(wa[k].tobytes() == wb[k].tobytes() for k in wa)
    assert _metrics(conn, a) == _metrics(conn, b)


def test_cache_on_and_off_give_identical_weights(trained_url):
    kw = dict(
        dataset="mini",
        model="mlp",
        classes=[0, 1, 2],
        hyperparams={"iterations": 2, "hidden": [8], "batch_size": 16},
    )
    on = _train(trained_url, cache="on", **kw).run_id
    off = _train(trained_url, cache="off", **kw).run_id
    won, woff = _weights(trained_url, on), _weights(trained_url, off)
    assert all(won[k].tobytes() == woff[k].tobytes() for k in won)
    full_on = _train(trained_url, dataset="mini", cache="on", hyperparams={"iterations": 5}).run_id
    full_off = _train(
        trained_url, dataset="mini", cache="off", hyperparams={"iterations": 5}
    ).run_id
    assert (
        _weights(trained_url, full_on)["weight"].tobytes()
        == _weights(trained_url, full_off)["weight"].tobytes()
    )


@pytest.mark.parametrize(
    "model, hyper, stop_at",
    [
        ("logreg", {"iterations": 40}, 17),
        ("mlp", {"iterations": 3, "hidden": [8], "batch_size": 16}, 5),
        ("cnn", {"iterations": 2, "layers": "conv4-pool-dense8", "batch_size": 16}, 5),
    ],
)
def test_resume_after_sigterm_equals_an_uninterrupted_run(trained_url, conn, model, hyper, stop_at):
    classes = [0, 1] if model == "logreg" else [0, 1, 2]
    kw = dict(
        dataset="mini", model=model, classes=classes, hyperparams=hyper, checkpoint_every=1000
    )
    reference = _train(trained_url, **kw).run_id

    def stop(step: int, total: int, cost: float) -> None:
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    engine = get_engine(trained_url)
    with pytest.raises(TrainingError, match="resume with"):
        training.train(engine, train_spec(**kw), progress=stop)
    run_id = conn.execute("SELECT max(id) FROM signdb.runs").fetchone()[0]
    status, done = conn.execute(
        "SELECT status, steps_done FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert (status, done) == ("interrupted", stop_at)
    result = training.resume(engine, run_id)
    assert result.status == "succeeded"
    ref, resumed = _weights(trained_url, reference), _weights(trained_url, run_id)
    assert all(ref[k].tobytes() == resumed[k].tobytes() for k in ref)
    assert [m for m in _metrics(conn, run_id)] == [m for m in _metrics(conn, reference)]


def test_an_exception_marks_the_run_failed_with_its_error(trained_url, conn, monkeypatch):
    from signdb.ml.logreg import LogisticRegression

    real = LogisticRegression._step

    def flaky(self, X, y, step):
        if step == 7:
            raise FloatingPointError("injected failure at step 7")
        return real(self, X, y, step)

    monkeypatch.setattr(LogisticRegression, "_step", flaky)
    with pytest.raises(TrainingError, match="injected failure"):
        _train(trained_url, dataset="mini", hyperparams={"iterations": 20})
    run_id = conn.execute("SELECT max(id) FROM signdb.runs").fetchone()[0]
    status, error, finished = conn.execute(
        "SELECT status, error, finished_at FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert status == "failed" and "injected failure at step 7" in error and finished is not None
    # The metrics of the steps before the failure were flushed.
    assert (
        conn.execute(
            "SELECT count(*) FROM signdb.run_metrics WHERE run_id = %s AND name = 'cost'", [run_id]
        ).fetchone()[0]
        == 7
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(dataset="nope"), "no dataset named 'nope'"),
        (dict(dataset="mini", classes=[0, 42]), "class '42' is not in dataset"),
        (dict(dataset="mini", hyperparams={"lr": 0}), "learning rate must be > 0"),
        (dict(dataset="mini", hyperparams={"lr": -1}), "learning rate must be > 0"),
        (dict(dataset="mini", hyperparams={"iterations": 0}), "iterations must be >= 1"),
        (dict(dataset="mini", classes=[0, 1, 2]), "2 classes"),
        (dict(dataset="mini", test_fraction=1.5), "test fraction"),
        (dict(dataset="mini", model="svm"), "svm"),
    ],
)
def test_bad_arguments_create_no_run(trained_url, conn, kw, message):
    before = conn.execute("SELECT count(*) FROM signdb.runs").fetchone()[0]
    with pytest.raises((InvalidArgument, NotFound)) as err:
        _train(trained_url, **kw)
    assert message in str(err.value)
    assert conn.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == before


def test_stale_heartbeat_is_reported_and_stored_as_interrupted(trained_url, conn):
    from signdb.tracking import show_run

    run_id = _train(trained_url, dataset="mini", hyperparams={"iterations": 2}).run_id
    conn.execute(
        "UPDATE signdb.runs SET status = 'running', heartbeat_at = now() - interval '10 minutes' WHERE id = %s",
        [run_id],
    )
    shown = show_run(get_engine(trained_url), run_id)
    assert shown["status"] == "interrupted"
    stored, error = conn.execute(
        "SELECT status, error FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()
    assert stored == "interrupted" and "heartbeat" in error


def test_stored_weights_rebuild_an_identical_predictor(trained_url, conn):
    run_id = _train(
        trained_url,
        dataset="mini",
        model="softmax",
        classes=[0, 1, 2],
        hyperparams={"iterations": 3},
    ).run_id
    _, model = training.load_model(get_engine(trained_url), run_id)
    from signdb.tracking import RunData

    data = RunData(get_engine(trained_url), run_id, (64, 64, 1), [0, 1, 2], 42, "on")
    stored = conn.execute(
        "SELECT test_accuracy FROM signdb.runs WHERE id = %s", [run_id]
    ).fetchone()[0]
    assert training.accuracy(model, data, "test") == stored


def test_the_loop_hands_back_its_final_held_out_probabilities(trained_url):
    # A sweep logs these as the run's predictions instead of predicting again.
    engine = get_engine(trained_url)
    spec = train_spec(
        dataset="mini", model="mlp", classes=[0, 1, 2], val_fraction=0.2,
        hyperparams={"iterations": 2, "hidden": (8,), "batch_size": 16},
    )  # fmt: skip
    model = training.prepare_model(engine, spec)
    with training.start_spec_run(engine, spec, model) as run:
        loop = training.train_loop(run, model, spec.trainer, keep_probabilities=True)
        arrays = {split: run.data.split(split) for split in ("val", "test")}
    assert sorted(loop.probabilities) == ["test", "val"]
    for split, a in arrays.items():
        proba = loop.probabilities[split]
        np.testing.assert_array_equal(proba, model.predict_proba_pixels(a.pixels))
        correct = np.mean(np.asarray(run.classes)[proba.argmax(axis=1)] == a.labels)
        assert getattr(loop, f"{split}_accuracy") == pytest.approx(correct, abs=1e-12)
    with training.start_spec_run(engine, spec, model) as run:  # not asked: nothing held
        assert training.train_loop(run, model, spec.trainer).probabilities == {}


def test_cnn_runs_take_the_same_path_end_to_end(trained_url, conn, mini_dataset_dir):
    from signdb import evaluation as evaluate

    hyper = {"iterations": 2, "layers": "conv4-pool-dense8", "batch_size": 16}
    run_id = _train(
        trained_url, dataset="mini", model="cnn", classes=None, hyperparams=hyper
    ).run_id
    tensors = conn.execute(
        "SELECT count(DISTINCT tensor) FROM signdb.weights WHERE run_id = %s AND final", [run_id]
    ).fetchone()[0]
    assert tensors > 4  # several tensors with shapes, optimizer state included
    result = evaluate.evaluate(get_engine(trained_url), run_id)
    assert result.rows == 10 and result.predictions > 0
    image = next((mini_dataset_dir / "3").iterdir())
    [prediction] = evaluate.predict_files(get_engine(trained_url), run_id, [image])
    assert prediction["label"] in range(10) and 0 <= prediction["probability"] <= 1
