"""signdb.predict_proba in plain SQL agrees with the Python scoring to 1e-6."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from signdb.db.engine import get_engine
from signdb.ml.base import pixels_to_float as to_float
from signdb.training import load_model
from tests.db.test_evaluate import real_runs  # noqa: F401 - session fixture


def _sql_and_python(real_runs, run_id):  # noqa: F811 - the imported fixture
    with psycopg.connect(real_runs.conninfo, options="-c role=signdb_analyst") as conn:
        rows = conn.execute(
            "SELECT p.image_id, p.probability, signdb.predict_proba(p.run_id, p.image_id), "
            "i.pixels FROM signdb.predictions p JOIN signdb.images i ON i.id = p.image_id "
            "WHERE p.run_id = %s ORDER BY p.image_id",
            [run_id],
        ).fetchall()
    assert len(rows) >= 5
    stored = np.array([r[1] for r in rows])
    in_sql = np.array([r[2] for r in rows])
    pixels = np.stack([np.frombuffer(r[3], np.uint8).reshape(64, 64, 1) for r in rows])
    return stored, in_sql, pixels


@pytest.mark.parametrize("which", ["binary", "multi"])
def test_sql_equals_python_to_1e6(real_runs, which):  # noqa: F811
    run_id = getattr(real_runs, which)
    stored, in_sql, pixels = _sql_and_python(real_runs, run_id)
    assert np.max(np.abs(stored - in_sql)) <= 1e-6
    # And both agree with the model's own float32 forward pass (to float32 precision).
    run, model = load_model(get_engine(real_runs.url), run_id)
    proba = model.predict_proba(to_float(pixels))
    python = proba[:, 1] if len(run.classes) == 2 else proba.max(axis=1)
    assert np.max(np.abs(python - in_sql)) <= 1e-4
    if which == "multi":
        assert run.hyperparams["standardize"] is True  # the standardised path is what is tested


def test_unstandardised_softmax_matches_too(real_runs):  # noqa: F811
    """Flip the stored flag inside a rolled-back transaction: SQL must follow it."""
    run, model = load_model(get_engine(real_runs.url), real_runs.multi)
    model.standardize = False
    with psycopg.connect(real_runs.conninfo) as conn:
        conn.execute(
            "UPDATE signdb.runs SET hyperparams = hyperparams || '{\"standardize\": false}' "
            "WHERE id = %s",
            [real_runs.multi],
        )
        rows = conn.execute(
            "SELECT signdb.predict_proba(%s, i.id), i.pixels FROM signdb.run_images ri "
            "JOIN signdb.images i ON i.id = ri.image_id WHERE ri.run_id = %s ORDER BY i.id LIMIT 8",
            [real_runs.multi, real_runs.multi],
        ).fetchall()
        conn.rollback()
    pixels = np.stack([np.frombuffer(r[1], np.uint8).reshape(64, 64, 1) for r in rows])
    python = model.predict_proba_pixels(pixels).max(axis=1)
    assert np.max(np.abs(python - np.array([r[0] for r in rows]))) <= 1e-6


def test_clear_errors(real_runs):  # noqa: F811
    with psycopg.connect(real_runs.conninfo, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.NoDataFound, match="no run with id 999999"):
            conn.execute("SELECT signdb.predict_proba(999999, 1)")
        with pytest.raises(psycopg.errors.NoDataFound, match="has no final weights"):
            conn.execute("SELECT signdb.predict_proba(%s, 1)", [real_runs.failed])
        with pytest.raises(psycopg.errors.NoDataFound, match="no image with id 999999"):
            conn.execute("SELECT signdb.predict_proba(%s, 999999)", [real_runs.binary])
        conn.execute("BEGIN")
        conn.execute("UPDATE signdb.runs SET model = 'mlp' WHERE id = %s", [real_runs.binary])
        with pytest.raises(
            psycopg.errors.FeatureNotSupported, match="logreg and softmax runs only"
        ):
            conn.execute("SELECT signdb.predict_proba(%s, 1)", [real_runs.binary])
        conn.execute("ROLLBACK")


def test_function_is_stable_and_granted(real_runs):  # noqa: F811
    rows = (
        psycopg.connect(real_runs.conninfo, autocommit=True)
        .execute(
            "SELECT p.provolatile, has_function_privilege('signdb_analyst', p.oid, 'EXECUTE'), "
            "has_function_privilege('signdb_writer', p.oid, 'EXECUTE') FROM pg_proc p "
            "WHERE p.proname = 'predict_proba' AND p.pronamespace = 'signdb'::regnamespace"
        )
        .fetchall()
    )
    assert rows == [("s", True, True)]
