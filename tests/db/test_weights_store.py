"""Tensors through signdb.weights: real[] written by binary COPY, read back by array_send."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_tensors_of_any_numeric_type_come_back_exactly(engine, pg, mini_dataset_dir):
    """A PyTorch state_dict holds int64 counters, 0-d tensors, bool masks: all lossless."""
    from signdb.data.preprocess import Preprocessing
    from signdb.loading import load_dataset

    load_dataset(engine, mini_dataset_dir, "mini", Preprocessing(), workers=1)
    import signdb

    db = signdb.connect(str(engine.url.render_as_string(hide_password=False)))
    tensors = {
        "counter": np.array(2**40 + 3, np.int64),  # beyond float32's integers
        "f64": np.array([1 / 3, np.pi], np.float64),
        "half": np.array([[0.5, -2.0]], np.float16),
        "mask": np.array([True, False, True]),
        "bytes": np.arange(5, dtype=np.uint8),
        "plain": np.ones((2, 2), np.float32),
    }
    with db.start_run("mini", "mine", classes="0,1") as run:
        run.save_weights(1, tensors)
    with transaction(engine) as session:
        _, back = weight_store.load_tensors(session, run.id, 1)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype, name
        assert back[name].shape == value.shape, name
        assert back[name].tobytes() == value.tobytes(), name
    stored = dict(
        pg.execute(
            "SELECT tensor, dtype FROM signdb.weights WHERE run_id = %s", [run.id]
        ).fetchall()
    )
    assert stored["counter"] == "int64" and stored["plain"] == "float32"
    # The float32 view analysts read is there for every tensor.
    (view,) = pg.execute(
        "SELECT data FROM signdb.weights WHERE run_id = %s AND tensor = 'f64'", [run.id]
    ).fetchone()
    assert np.allclose(view, [1 / 3, np.pi])


def test_tensors_that_cannot_be_stored_exactly_are_refused(engine, mini_dataset_dir):
    import torch

    from signdb.data.preprocess import Preprocessing
    from signdb.errors import InvalidArgument
    from signdb.loading import load_dataset

    load_dataset(engine, mini_dataset_dir, "mini", Preprocessing(), workers=1)
    import signdb

    db = signdb.connect(str(engine.url.render_as_string(hide_password=False)))
    with db.start_run("mini", "mine", classes="0,1") as run:
        with pytest.raises(InvalidArgument, match="bfloat16.*tensor.float"):
            run.save_weights(0, {"w": torch.ones(2, dtype=torch.bfloat16)})
        with pytest.raises(InvalidArgument, match="dtype complex128"):
            run.save_weights(0, {"w": np.ones(2, np.complex128)})
        run.save_weights(0, {"w": torch.arange(3)})  # a CPU tensor: fine, stored as int64
