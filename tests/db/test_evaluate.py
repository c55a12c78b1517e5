"""signdb.evaluate: predictions and TP/FP/TN/FN rows against an independent recomputation.

``real_runs`` builds, once per session, a database holding real runs on a
small slice of the shared dataset: two binary logreg runs that differ only in
their seed, a 3-class softmax run (all three evaluated), a failed run, and two
finished sweeps of logreg's learning rate (``lr-grid``, ``lr-random``). The
analyst-guide, report, predict and runs-CLI tests import it; they only read.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb import evaluation
from signdb.errors import InvalidArgument, NotFound
from signdb.ml import metrics
from tests.conftest import _admin, _psycopg_conninfo, fresh_database

PER_LABEL = 30


@dataclass(frozen=True)
class RealRuns:
    url: str  # SQLAlchemy URL
    conninfo: str  # psycopg conninfo
    binary: int  # logreg, seed 1
    binary_other_seed: int  # logreg, seed 2, otherwise the same hyperparameters
    multi: int  # softmax over 0, 1, 2
    failed: int
    image_dir: Path


def copy_subset(source: Path, dest: Path, labels=(0, 1, 2), per_label: int = PER_LABEL) -> Path:
    for label in labels:
        files = sorted((source / str(label)).iterdir())[:per_label]
        (dest / str(label)).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dest / str(label) / f.name)
    return dest


@pytest.fixture(scope="session")
def real_runs(pg_admin_url, template_db, shared_dataset, tmp_path_factory) -> RealRuns:
    from signdb import training
    from signdb.data.preprocess import Preprocessing
    from signdb.db.engine import get_engine
    from signdb.loading import load_dataset

    name = fresh_database(pg_admin_url, template_db)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = get_engine(url)
    images = copy_subset(shared_dataset, tmp_path_factory.mktemp("subset"))
    load_dataset(engine, images, "d", Preprocessing(), workers=1)

    def train(**kwargs) -> int:
        config = training.TrainSpec(dataset="d", test_fraction=0.3, **kwargs)
        return training.train(engine, config).run_id

    binary = train(seed=1, hyperparams={"iterations": 60})
    other = train(seed=2, hyperparams={"iterations": 60})
    # Deliberately undertrained so that it makes mistakes for the gallery and guide.
    multi = train(
        model="softmax", classes=[0, 1, 2], seed=3, hyperparams={"iterations": 1, "lr": 0.001}
    )
    failed = train(seed=4, name="will fail", hyperparams={"iterations": 5})
    for run in (binary, other, multi):
        evaluation.evaluate(engine, run)
    _sweeps(engine)
    conninfo = _psycopg_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE signdb.runs SET status = 'failed', "
            "error = 'TrainingError: injected by the test fixture' WHERE id = %s",
            [failed],
        )
        # A run that failed never stored final weights.
        conn.execute("DELETE FROM signdb.weights WHERE run_id = %s AND final", [failed])
    engine.dispose()
    yield RealRuns(url, conninfo, binary, other, multi, failed, images)
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sweeps(engine) -> None:  # noqa: ANN001
    """Two finished sweeps of logreg's learning rate, for the analyst guide's sweep queries."""
    from signdb.sweeps import SweepRequest, create_sweep, work

    fixed = ("iterations=60",)
    for request in (
        SweepRequest("lr-grid", "d", "logreg", params=("lr=choice:0.003,0.01,0.03", *fixed),
                     sampler="grid", repeats=2),
        SweepRequest("lr-random", "d", "logreg", params=("lr=loguniform:0.003:0.03", *fixed),
                     sampler="random", trials=3, repeats=2),
    ):  # fmt: skip
        create_sweep(engine, request)
        work(engine, request.name)


def _fetch(conninfo: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(sql, params).fetchall()


# -- thresholds (no database) ---------------------------------------------------------------
def test_default_sweep_has_101_thresholds_including_half():
    sweep = metrics.parse_thresholds("0:1:0.01")
    assert len(sweep) == 101
    assert sweep[0] == 0.0 and sweep[-1] == 1.0 and 0.5 in sweep
    assert 0.3 in sweep  # rounded: not 0.30000000000000004


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0:1", "must be START:STOP:STEP, got '0:1'"),
        ("a:1:0.1", "takes three numbers, got 'a:1:0.1'"),
        ("0.5:0.5:0.1", "needs 0 <= START < STOP <= 1, got START 0.5 and STOP 0.5"),
        ("-0.1:1:0.1", "needs 0 <= START < STOP <= 1"),
        ("0:1.5:0.1", "needs 0 <= START < STOP <= 1"),
        ("0:1:0", "STEP must be > 0, got 0"),
        ("0:1:-0.1", "STEP must be > 0"),
        ("0:1:nan", "finite"),
        ("0:1:0.000000001", "use a STEP of at least"),
    ],
)
def test_bad_thresholds_are_named(spec, message):
    with pytest.raises(InvalidArgument, match="--thresholds") as info:
        metrics.parse_thresholds(spec)
    assert message in str(info.value)


def test_binary_counts_match_a_loop_at_every_threshold():
    rng = np.random.default_rng(0)
    positive = rng.random(200) < 0.4
    p = np.round(rng.random(200), 2)  # ties with the thresholds on purpose
    thresholds = metrics.parse_thresholds("0:1:0.01")
    tp, fp, tn, fn = metrics.binary_counts(positive, p, thresholds)
    for i, t in enumerate(thresholds):
        predicted = p >= t
        assert tp[i] == np.sum(predicted & positive)
        assert fp[i] == np.sum(predicted & ~positive)
        assert tn[i] == np.sum(~predicted & ~positive)
        assert fn[i] == np.sum(~predicted & positive)


# -- against the database ---------------------------------------------------------------------
def test_counts_sum_to_the_split_size_at_every_threshold(real_runs):
    for run in (real_runs.binary, real_runs.multi):
        rows = _fetch(
            real_runs.conninfo,
            "SELECT e.tp + e.fp + e.tn + e.fn, r.test_size FROM signdb.evaluations e "
            "JOIN signdb.runs r ON r.id = e.run_id WHERE e.run_id = %s AND e.split = 'test'",
            [run],
        )
        assert rows and all(total == size for total, size in rows), rows
    thresholds = _fetch(
        real_runs.conninfo,
        "SELECT threshold FROM signdb.evaluations WHERE run_id = %s ORDER BY threshold",
        [real_runs.binary],
    )
    assert len(thresholds) == 101 and (0.5,) in thresholds


def test_binary_counts_equal_a_numpy_recomputation_from_predictions(real_runs):
    preds = _fetch(
        real_runs.conninfo,
        "SELECT label, probability, predicted FROM signdb.predictions "
        "WHERE run_id = %s AND split = 'test'",
        [real_runs.binary],
    )
    label = np.array([r[0] for r in preds])
    p = np.array([r[1] for r in preds])
    assert set(r[2] for r in preds) <= {0, 1}
    assert np.array_equal(np.array([r[2] for r in preds]), np.where(p >= 0.5, 1, 0))
    rows = _fetch(
        real_runs.conninfo,
        "SELECT threshold, tp, fp, tn, fn FROM signdb.evaluations "
        "WHERE run_id = %s AND split = 'test' AND positive_class = 1 ORDER BY threshold",
        [real_runs.binary],
    )
    for t, tp, fp, tn, fn in rows:
        assert (tp, fp, tn, fn) == (
            np.sum((p >= t) & (label == 1)),
            np.sum((p >= t) & (label == 0)),
            np.sum((p < t) & (label == 0)),
            np.sum((p < t) & (label == 1)),
        ), t


def test_multiclass_rows_are_one_vs_rest_at_the_argmax(real_runs):
    preds = _fetch(
        real_runs.conninfo,
        "SELECT label, predicted FROM signdb.predictions WHERE run_id = %s AND split = 'test'",
        [real_runs.multi],
    )
    label = np.array([r[0] for r in preds])
    guess = np.array([r[1] for r in preds])
    rows = _fetch(
        real_runs.conninfo,
        "SELECT positive_class, threshold, tp, fp, tn, fn FROM signdb.evaluations "
        "WHERE run_id = %s AND split = 'test' ORDER BY positive_class",
        [real_runs.multi],
    )
    assert [r[0] for r in rows] == [0, 1, 2]
    for c, threshold, tp, fp, tn, fn in rows:
        assert threshold is None
        assert (tp, fp, tn, fn) == (
            np.sum((guess == c) & (label == c)),
            np.sum((guess == c) & (label != c)),
            np.sum((guess != c) & (label != c)),
            np.sum((guess != c) & (label == c)),
        )
    # The confusion view serves multi-class runs: its diagonal is the TPs.
    diagonal = _fetch(
        real_runs.conninfo,
        "SELECT actual, count FROM signdb.confusion "
        "WHERE run_id = %s AND split = 'test' AND actual = predicted ORDER BY actual",
        [real_runs.multi],
    )
    assert {a: n for a, n in diagonal} == {r[0]: r[2] for r in rows if r[2]}


def test_rates_match_the_formulas_and_are_null_on_zero_denominators(real_runs):
    rows = _fetch(
        real_runs.conninfo,
        "SELECT tp, fp, tn, fn, accuracy, precision, recall, f1 FROM signdb.evaluations "
        "WHERE run_id IN (%s, %s)",
        [real_runs.binary, real_runs.multi],
    )

    def ratio(a, b):
        return None if b == 0 else a / b

    saw_null = False
    for tp, fp, tn, fn, acc, prec, rec, f1 in rows:
        expected = (
            ratio(tp + tn, tp + fp + tn + fn),
            ratio(tp, tp + fp),
            ratio(tp, tp + fn),
            ratio(2 * tp, 2 * tp + fp + fn),
        )
        for got, want in zip((acc, prec, rec, f1), expected, strict=True):
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-12)
        saw_null |= prec is None
    # At threshold 1.0 nothing is predicted positive: precision's denominator is 0.
    assert saw_null


def test_headline_metrics_come_back_from_the_database(real_runs):
    from signdb.db.engine import get_engine

    result = evaluation.evaluate(get_engine(real_runs.url), real_runs.binary)
    row = _fetch(
        real_runs.conninfo,
        "SELECT accuracy, precision, recall, f1 FROM signdb.evaluations "
        "WHERE run_id = %s AND split = 'test' AND threshold = 0.5",
        [real_runs.binary],
    )[0]
    assert (result.accuracy, result.precision, result.recall, result.f1) == row
    assert result.rows == 101
    summary = _fetch(
        real_runs.conninfo,
        "SELECT test_f1 FROM signdb.run_summary WHERE run_id = %s",
        [real_runs.binary],
    )
    assert summary == [(row[3],)]


def test_reevaluation_is_atomic_when_the_copy_fails(real_runs, monkeypatch):
    from signdb.db.engine import get_engine
    from signdb.store import evaluations as eval_store
    from signdb.store import predictions as prediction_store

    query = (
        "SELECT (SELECT count(*) FROM signdb.predictions WHERE run_id = %(r)s), "
        "(SELECT array_agg(tp ORDER BY threshold) FROM signdb.evaluations "
        "WHERE run_id = %(r)s AND split = 'test'), "
        "(SELECT min(evaluated_at) FROM signdb.evaluations WHERE run_id = %(r)s)"
    )
    before = _fetch(real_runs.conninfo, query, {"r": real_runs.binary})
    assert before[0][0] > 0

    calls = []
    real_copy = eval_store.copy_rows

    def copy_then_fail(conn, statement, types, rows):
        calls.append(statement)
        if "signdb.evaluations" in statement:
            # The delete and the predictions COPY have already run in this transaction.
            assert conn.execute(
                "SELECT count(*) FROM signdb.evaluations WHERE run_id = %s", [real_runs.binary]
            ).fetchone() == (0,)
            raise RuntimeError("injected failure in the middle of a re-evaluation")
        return real_copy(conn, statement, types, rows)

    monkeypatch.setattr(eval_store, "copy_rows", copy_then_fail)
    monkeypatch.setattr(prediction_store, "copy_rows", copy_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        evaluation.evaluate(get_engine(real_runs.url), real_runs.binary)
    assert len(calls) == 2  # predictions, then the evaluations that failed
    assert _fetch(real_runs.conninfo, query, {"r": real_runs.binary}) == before


def test_evaluating_the_train_split_keeps_the_test_rows(real_runs):
    from signdb.db.engine import get_engine

    engine = get_engine(real_runs.url)
    result = evaluation.evaluate(engine, real_runs.binary_other_seed, split="train")
    assert result.predictions > 0
    counts = dict(
        _fetch(
            real_runs.conninfo,
            "SELECT split, count(*) FROM signdb.evaluations WHERE run_id = %s GROUP BY split",
            [real_runs.binary_other_seed],
        )
    )
    assert counts == {"test": 101, "train": 101}
    sizes = _fetch(
        real_runs.conninfo,
        "SELECT split, count(*) FROM signdb.predictions WHERE run_id = %s GROUP BY split "
        "ORDER BY split",
        [real_runs.binary_other_seed],
    )
    run_sizes = _fetch(
        real_runs.conninfo,
        "SELECT test_size, train_size FROM signdb.runs WHERE id = %s",
        [real_runs.binary_other_seed],
    )[0]
    assert sizes == [("test", run_sizes[0]), ("train", run_sizes[1])]


def test_unknown_run_and_run_without_final_weights(real_runs):
    from signdb.db.engine import get_engine

    engine = get_engine(real_runs.url)
    with pytest.raises(NotFound, match="no run with id 999999; `signdb runs list`"):
        evaluation.evaluate(engine, 999999)
    with pytest.raises(InvalidArgument, match=f"run {real_runs.failed} has no final weights"):
        evaluation.evaluate(engine, real_runs.failed)
