"""The torch engine on the trainer's path: the same runs, rows and guarantees as numpy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from signdb.db.engine import get_engine, transaction
from signdb.errors import InvalidArgument, TrainingError
from signdb.store import weights as weight_store
from signdb.training import TrainerSettings, TrainSpec, load_model, resume, train

CNN = {"iterations": 2, "layers": "conv4-pool-dense8", "batch_size": 16}


@pytest.fixture
def pg(trained_url: str):
    """A connection to the trained database (not the empty per-test one)."""
    import psycopg
    from sqlalchemy.engine import make_url

    info = make_url(trained_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, autocommit=True) as conn:
        yield conn


def _spec(**kw) -> TrainSpec:
    trainer = TrainerSettings(**kw.pop("trainer", {}))
    return TrainSpec(dataset="mini", classes=[0, 1, 2], engine="torch", trainer=trainer, **kw)


def _final(url: str, run_id: int) -> dict[str, np.ndarray]:
    with transaction(get_engine(url)) as session:
        step = weight_store.latest_step(session, run_id, final_only=True)
        return weight_store.load_tensors(session, run_id, step)[1]


def test_torch_cnn_trains_evaluates_and_predicts(trained_url, pg, mini_dataset_dir):
    from signdb.evaluation import evaluate, predict_files

    engine = get_engine(trained_url)
    result = train(engine, _spec(model="cnn", hyperparams=CNN))
    assert result.status == "succeeded"
    engine_name, trainer = pg.execute(
        "SELECT engine, trainer FROM signdb.runs WHERE id = %s", [result.run_id]
    ).fetchone()
    assert engine_name == "torch" and trainer["device"] == "auto"
    final = _final(trained_url, result.run_id)
    # Every state_dict tensor, batch-norm buffers and optimizer state included, exactly.
    assert final["bn0.num_batches_tracked"].dtype == np.int64
    assert any(k.startswith("optim.") for k in final)
    scored = evaluate(engine, result.run_id)
    assert scored.rows == 3 and scored.accuracy == pytest.approx(result.test_accuracy)
    image = next((mini_dataset_dir / "2").iterdir())
    [prediction] = predict_files(engine, result.run_id, [image])
    assert prediction["label"] in (0, 1, 2)
    # The stored model predicts what the trained one did.
    _, model = load_model(engine, result.run_id)
    assert type(model).__name__ == "TorchConvNet"


def test_two_torch_runs_give_identical_weights(trained_url):
    engine = get_engine(trained_url)
    a = train(engine, _spec(model="mlp", hyperparams={"iterations": 2, "hidden": [16]}))
    b = train(engine, _spec(model="mlp", hyperparams={"iterations": 2, "hidden": [16]}))
    wa, wb = _final(trained_url, a.run_id), _final(trained_url, b.run_id)
    assert wa.keys() == wb.keys() and all(wa[k].tobytes() == wb[k].tobytes() for k in wa)


def test_a_torch_run_resumed_after_sigterm_equals_an_uninterrupted_one(trained_url, pg):
    engine = get_engine(trained_url)
    spec = _spec(model="cnn", hyperparams=CNN, trainer={"checkpoint_every": 1000})
    reference = train(engine, spec).run_id

    def stop(step: int, total: int, cost: float) -> None:
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingError, match="resume with"):
        train(engine, spec, progress=stop)
    run_id = pg.execute("SELECT max(id) FROM signdb.runs").fetchone()[0]
    with pytest.raises(InvalidArgument, match="trained on the torch engine.*drop --engine numpy"):
        resume(engine, run_id, engine_name="numpy")
    assert resume(engine, run_id).status == "succeeded"
    ref, resumed = _final(trained_url, reference), _final(trained_url, run_id)
    assert all(ref[k].tobytes() == resumed[k].tobytes() for k in ref)


def test_device_and_model_errors_create_no_run(trained_url, pg):
    engine = get_engine(trained_url)
    before = pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0]
    with pytest.raises(InvalidArgument, match="--device cuda needs a CUDA GPU.*--device auto"):
        train(engine, _spec(model="cnn", hyperparams=CNN, trainer={"device": "cuda"}))
    with pytest.raises(InvalidArgument, match="--engine torch trains mlp and cnn"):
        train(engine, _spec(model="softmax"))
    with pytest.raises(InvalidArgument, match="--device cuda needs --engine torch"):
        train(
            engine,
            TrainSpec(dataset="mini", model="mlp", trainer=TrainerSettings(device="cuda")),
        )
    assert pg.execute("SELECT count(*) FROM signdb.runs").fetchone()[0] == before


# PyTorch hidden, as if the extra were not installed.
_NO_TORCH = """
import sys
sys.modules["torch"] = None
import signdb, signdb.cli, signdb.ml
assert "torch" not in {m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}
from signdb.cli import main
sys.argv = ["signdb", *sys.argv[1:]]
main()
"""


def test_the_core_runs_without_torch_and_the_engine_says_how_to_get_it(trained_url):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", _NO_TORCH, *args], capture_output=True, text=True, timeout=120
        )

    numpy_run = cli("train", "--dataset", "mini", "--iterations", "3", "--json")
    assert numpy_run.returncode == 0, numpy_run.stderr
    torch_run = cli("train", "--dataset", "mini", "--model", "cnn", "--engine", "torch")
    assert torch_run.returncode == 1
    assert "pip install 'signdb[torch]'" in torch_run.stderr
    assert len(torch_run.stderr.strip().splitlines()) == 1
