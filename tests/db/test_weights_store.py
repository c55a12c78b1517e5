"""Tensors through signdb.weights: real[] written by binary COPY, read back by array_send."""

from __future__ import annotations

import numpy as np

from signdb.db.engine import transaction
from signdb.store import weights as weight_store
from tests.helpers import train_spec


def test_tensors_round_trip_exactly_and_match_the_text_path(engine, pg, mini_dataset_dir):
    from signdb.data.preprocess import Preprocessing
    from signdb.loading import load_dataset
    from signdb.training import train

    load_dataset(engine, mini_dataset_dir, "mini", Preprocessing(), workers=1)
    run_id = train(engine, train_spec(dataset="mini", hyperparams={"iterations": 1})).run_id
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.standard_normal((7, 3)).astype(np.float32),
        "scalar": np.float32(2.5),
        "tiny": np.array([np.finfo(np.float32).tiny, -0.0, np.inf], np.float32),
        "optim.w.m": rng.standard_normal(21).astype(np.float32),
    }
    with transaction(engine) as session:
        weight_store.save_tensors(session, run_id, 10**6, tensors)
    with transaction(engine) as session:
        step, back = weight_store.load_tensors(session, run_id, 10**6)
        _, model_only = weight_store.load_tensors(session, run_id, 10**6, optimizer=False)
    assert step == 10**6 and set(back) == set(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == np.float32
        assert (
            back[name].tobytes()
            == np.asarray(value, np.float32).reshape(back[name].shape).tobytes()
        )
    assert set(model_only) == {"w", "scalar", "tiny"}
    # The binary read agrees with PostgreSQL's own text rendering of the array.
    text_form = pg.execute(
        "SELECT data FROM signdb.weights WHERE run_id = %s AND step = %s AND tensor = 'w'",
        [run_id, 10**6],
    ).fetchone()[0]
    assert np.array_equal(np.asarray(text_form, np.float32), back["w"].ravel())
