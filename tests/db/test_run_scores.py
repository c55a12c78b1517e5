"""What an evaluation stores besides TP/FP/TN/FN: scores equal to scikit-learn's, intervals,
curves, calibration, the full probability vector, and the paired comparison of two runs.

scikit-learn and scipy are the references (test-only); ``sklearn_scores`` and
``ece_loop`` are the unit tests' reference implementations, applied here to what
went into and came out of the database.
"""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

import signdb
from signdb import evaluation
from signdb.db.engine import get_engine
from signdb.errors import InvalidArgument
from signdb.ml.scores import SCORE_NAMES
from signdb.training import load_model
from tests.db.test_evaluate import real_runs  # noqa: F401 - session fixture
from tests.helpers import signdb as signdb_cli
from tests.helpers import write_class_images
from tests.unit.ml.test_scores import ece_loop, sklearn_scores

COLOURS = {"a": (230, 230, 240), "b": (200, 120, 40), "c": (40, 180, 60)}


@pytest.fixture
def fixed(db_url, tmp_path):
    """A pre-split dataset: train has a, b and c; test has 8 a, 3 b and no c at all."""
    root = tmp_path / "fixed"
    for name, colour in COLOURS.items():
        write_class_images(root / "train" / name, 6, seed=ord(name), colour=colour)
    write_class_images(root / "test" / "a", 8, seed=1, colour=COLOURS["a"])
    write_class_images(root / "test" / "b", 3, seed=2, colour=COLOURS["b"])
    db = signdb.connect(db_url)
    db.load(root, "fixed", size=16, workers=1)
    return db


def _stored(pg: psycopg.Connection, run_id: int, split: str = "test") -> dict:
    rows = pg.execute(
        "SELECT metric, value, ci_low, ci_high FROM signdb.run_scores "
        "WHERE run_id = %s AND split = %s",
        [run_id, split],
    ).fetchall()
    return {m: (v, lo, hi) for m, v, lo, hi in rows}


def _decide(proba: np.ndarray) -> np.ndarray:
    if proba.shape[1] == 2:
        return (proba[:, 1] >= 0.5).astype(np.int64)
    return proba.argmax(axis=1)


def _assert_equal_to_sklearn(stored: dict, y: np.ndarray, proba: np.ndarray) -> None:
    pred = _decide(proba)
    want = sklearn_scores(y, pred, proba)
    assert set(stored) == set(SCORE_NAMES)
    for metric, expected in want.items():
        got = stored[metric][0]
        if expected is None:
            assert got is None, (metric, got)
        else:
            assert got == pytest.approx(expected, abs=1e-9), metric
    assert stored["ece"][0] == pytest.approx(ece_loop(y, pred, proba), abs=1e-12)


def _proba(n: int, k: int, y: np.ndarray, seed: int, skill: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("classes", "kind"),
    [
        (["a", "b"], "imbalanced binary (8 vs 3)"),
        (None, "three classes, one with no test image"),
        (["a", "b"], "perfect"),
    ],
)
def test_logged_scores_equal_sklearn_and_null_where_it_warns(fixed, pg, classes, kind):
    with fixed.start_run("fixed", "own-model", classes=classes, split="fixed") as run:
        _, y, ids = run.arrays("test")
        k = len(run.classes)
        proba = _proba(len(y), k, y, seed=len(kind))
        if kind == "perfect":
            proba = np.eye(k)[y] * 0.9 + 0.1 / k
        run.log_predictions("test", ids, proba, bootstrap=200)
    stored = _stored(pg, run.id)
    _assert_equal_to_sklearn(stored, y, proba)
    if kind.startswith("three"):  # class c never occurs in test: recall and AUC undefined
        assert stored["macro_recall"][0] is None and stored["roc_auc"][0] is None
        ((c_auc, c_ap),) = pg.execute(
            "SELECT max(value) FILTER (WHERE metric = 'roc_auc'), "
            "max(value) FILTER (WHERE metric = 'average_precision') FROM signdb.class_scores "
            "WHERE run_id = %s AND class_name = 'c'",
            [run.id],
        ).fetchall()
        assert (c_auc, c_ap) == (None, None)
    if kind == "perfect":
        assert stored["accuracy"] == (1.0, 1.0, 1.0) and stored["roc_auc"][0] == 1.0
    # The calibration bins count every image once and add up to the ECE.
    bins = pg.execute(
        "SELECT images, mean_confidence, accuracy FROM signdb.calibration "
        "WHERE run_id = %s AND split = 'test'",
        [run.id],
    ).fetchall()
    assert sum(b[0] for b in bins) == len(y)
    ece = sum(n / len(y) * abs(acc - conf) for n, conf, acc in bins)
    assert ece == pytest.approx(stored["ece"][0], abs=1e-12)


def test_curves_integrate_to_the_stored_areas_in_sql(fixed, pg):
    with fixed.start_run("fixed", "own-model", classes=None, split="fixed") as run:
        _, y, ids = run.arrays("train")
        proba = _proba(len(y), 3, y, seed=4, skill=0.7)
        run.log_predictions("train", ids, proba, bootstrap=0)
    # The analyst guide's trapezoid (ROC) and step sum (AP) over class_curves.
    rows = pg.execute(
        """
        WITH c AS (
            SELECT label, point, fpr, tpr, recall, precision,
                   lag(fpr) OVER w AS fpr0, lag(tpr) OVER w AS tpr0, lag(recall) OVER w AS rec0
            FROM signdb.class_curves WHERE run_id = %s AND split = 'train'
            WINDOW w AS (PARTITION BY label ORDER BY point)
        )
        SELECT label, sum((fpr - fpr0) * (tpr + tpr0) / 2) AS roc_auc,
               sum((recall - rec0) * precision) AS average_precision
        FROM c WHERE point > 0 GROUP BY label ORDER BY label
        """,
        [run.id],
    ).fetchall()
    stored = dict(
        pg.execute(
            "SELECT label, value FROM signdb.class_scores WHERE run_id = %s AND split = 'train' "
            "AND metric = 'roc_auc' ORDER BY label",
            [run.id],
        ).fetchall()
    )
    assert len(rows) == 3
    for c, (label, auc, ap) in enumerate(rows):
        assert auc == pytest.approx(stored[label], abs=1e-12)
        assert auc == pytest.approx(roc_auc_score(y == c, proba[:, c]), abs=1e-12)
        stored_ap = pg.execute(
            "SELECT value FROM signdb.class_scores WHERE run_id = %s AND split = 'train' "
            "AND label = %s AND metric = 'average_precision'",
            [run.id, label],
        ).fetchone()[0]
        assert ap == pytest.approx(stored_ap, abs=1e-12)
    # The first point of every curve is nothing predicted positive.
    starts = pg.execute(
        "SELECT threshold, tp, fp FROM signdb.class_curves WHERE run_id = %s AND point = 0",
        [run.id],
    ).fetchall()
    assert starts == [(float("inf"), 0, 0)] * 3


def test_evaluate_stores_sklearn_scores_and_the_full_vector(real_runs, tmp_path):  # noqa: F811
    engine = get_engine(real_runs.url)
    for run_id in (real_runs.binary, real_runs.multi):
        record, model = load_model(engine, run_id)
        scored = evaluation.score_split(engine, model, run_id, "test")
        with psycopg.connect(real_runs.conninfo) as pg:
            stored = _stored(pg, run_id)
            rows = pg.execute(
                "SELECT probabilities FROM signdb.predictions WHERE run_id = %s AND split = 'test' "
                "ORDER BY image_id",
                [run_id],
            ).fetchall()
        labels = np.searchsorted(np.asarray(record.classes), scored.labels)  # class indices
        _assert_equal_to_sklearn(stored, labels, scored.probabilities)
        vectors = np.array([r[0] for r in rows], dtype=np.float32)  # real[]: float32 values
        assert vectors.shape == scored.probabilities.shape
        assert np.array_equal(vectors, scored.probabilities.astype(np.float32))
        for metric in ("accuracy", "macro_f1"):
            value, low, high = stored[metric]
            assert low <= value <= high and low < high


def test_intervals_are_reproducible_and_bootstrap_zero_skips_them(real_runs):  # noqa: F811
    engine = get_engine(real_runs.url)
    run_id = real_runs.binary_other_seed
    with psycopg.connect(real_runs.conninfo) as pg:
        before = _stored(pg, run_id)
        evaluation.evaluate(engine, run_id)
        assert _stored(pg, run_id) == before  # the bootstrap's seed is fixed
        result = evaluation.evaluate(engine, run_id, bootstrap=0)
        assert all(lo is None and hi is None for _, lo, hi in _stored(pg, run_id).values())
        assert result.scores["accuracy"]["ci_low"] is None
        evaluation.evaluate(engine, run_id)
        assert _stored(pg, run_id) == before
        ((low, high),) = pg.execute(
            "SELECT test_accuracy_low, test_accuracy_high FROM signdb.leaderboard "
            "WHERE run_id = %s",
            [run_id],
        ).fetchall()
        assert (low, high) == before["accuracy"][1:]


def test_reevaluating_fills_in_vectors_missing_from_older_rows(real_runs):  # noqa: F811
    with psycopg.connect(real_runs.conninfo, autocommit=True) as pg:
        pg.execute(
            "UPDATE signdb.predictions SET probabilities = NULL WHERE run_id = %s",
            [real_runs.multi],
        )
        evaluation.evaluate(get_engine(real_runs.url), real_runs.multi)
        missing = pg.execute(
            "SELECT count(*) FILTER (WHERE probabilities IS NULL), count(*), "
            "min(cardinality(probabilities)) FROM signdb.predictions WHERE run_id = %s",
            [real_runs.multi],
        ).fetchone()
    assert missing[0] == 0 and missing[1] > 0 and missing[2] == 3


def test_a_bad_bootstrap_count_is_named(real_runs):  # noqa: F811
    with pytest.raises(InvalidArgument, match="--bootstrap must be a whole number"):
        evaluation.evaluate(get_engine(real_runs.url), real_runs.binary, bootstrap=-5)


# -- compare ---------------------------------------------------------------------------------
def test_compare_pairs_two_runs_on_the_same_images(fixed, pg):
    def logged(seed: int) -> int:
        with fixed.start_run("fixed", "own-model", classes=None, split="fixed") as run:
            _, y, ids = run.arrays("test")
            run.log_predictions("test", ids, _proba(len(y), 3, y, seed=seed, skill=0.8))
        return run.id

    a, b = logged(1), logged(2)
    result = fixed.compare(a, b)
    rows = pg.execute(
        "SELECT pa.label = pa.predicted, pb.label = pb.predicted FROM signdb.predictions pa "
        "JOIN signdb.predictions pb ON pb.image_id = pa.image_id AND pb.run_id = %s "
        "WHERE pa.run_id = %s",
        [b, a],
    ).fetchall()
    only_a = sum(x and not y for x, y in rows)
    only_b = sum(y and not x for x, y in rows)
    assert (result.images, result.a_only_correct, result.b_only_correct) == (11, only_a, only_b)
    assert result.mcnemar_p == pytest.approx(
        binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0, abs=1e-12
    )
    low, high = result.accuracy_difference_ci
    assert low <= result.accuracy_difference <= high
    assert result.accuracy_difference == pytest.approx(result.accuracy[0] - result.accuracy[1])
    done = signdb_cli("compare", str(a), str(b), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for key in ("runs", "images", "accuracy", "a_only_correct", "b_only_correct", "mcnemar_p",
                "accuracy_difference_ci"):  # fmt: skip
        assert key in out
    assert out["runs"] == [a, b] and out["mcnemar_p"] == result.mcnemar_p


def test_compare_refuses_runs_whose_splits_differ(real_runs):  # noqa: F811
    # binary and binary_other_seed differ only in their seed: different test sets.
    done = signdb_cli(
        "compare", str(real_runs.binary), str(real_runs.binary_other_seed),
        env={"SIGNDB_DATABASE_URL": real_runs.url},
    )  # fmt: skip
    assert done.returncode == 1
    assert "put different images in their test split" in done.stderr
    assert "the same --seed, --test-fraction and --val-fraction" in done.stderr
    engine = get_engine(real_runs.url)
    with pytest.raises(InvalidArgument, match="two different runs"):
        evaluation.compare(engine, real_runs.binary, real_runs.binary)
    with pytest.raises(InvalidArgument, match=f"run {real_runs.failed} has no test predictions"):
        evaluation.compare(engine, real_runs.binary, real_runs.failed)
