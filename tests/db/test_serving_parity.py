"""Every built-in model and engine, served: infer = predict = stored predictions = the exported file."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import psycopg
import pytest

from signdb.db.engine import get_engine
from signdb.evaluation import predict_files
from signdb.serving import export_model, predict_uploads, resolve_model
from tests.serving_runs import RUNS

TOLERANCE = 1e-5


def _stored(runs, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(pixels, stored probabilities, stored predicted labels, sources) of the run's test split."""
    with psycopg.connect(runs.conninfo) as conn:
        rows = conn.execute(
            "SELECT i.pixels, i.height, i.width, i.channels, p.probabilities, p.predicted, i.source "
            "FROM signdb.predictions p JOIN signdb.images i ON i.id = p.image_id "
            "WHERE p.run_id = %s AND p.split = 'test' ORDER BY p.image_id",
            [run_id],
        ).fetchall()
    assert rows, "the run was evaluated"
    pixels = np.stack([np.frombuffer(r[0], np.uint8).reshape(r[1], r[2], r[3]) for r in rows])
    proba = np.array([r[4] for r in rows], np.float64)
    return pixels, proba, np.array([r[5] for r in rows]), [r[6] for r in rows]


@pytest.mark.parametrize("key", list(RUNS))
def test_served_probabilities_equal_the_stored_predictions(served_runs, key):
    run_id = served_runs.runs[key]
    pixels, stored, predicted, _ = _stored(served_runs, run_id)
    model = resolve_model(get_engine(served_runs.url), f"run-{run_id}")
    proba, labels = model.infer(pixels)
    assert np.abs(proba - stored).max() <= TOLERANCE
    assert labels.tolist() == predicted.tolist()
    # The same images as FP32 in [0, 1] are the same request.
    proba32, labels32 = model.infer(pixels.astype(np.float32) / np.float32(255))
    assert np.array_equal(proba32, proba) and np.array_equal(labels32, labels)


@pytest.mark.parametrize("key", list(RUNS))
def test_uploaded_files_are_answered_as_signdb_predict_answers(served_runs, key):
    run_id = served_runs.runs[key]
    engine = get_engine(served_runs.url)
    _, _, _, sources = _stored(served_runs, run_id)
    paths = sources[:3]
    expected = predict_files(engine, run_id, paths)
    uploads = [(p.rsplit("/", 1)[-1], open(p, "rb").read()) for p in paths]  # noqa: SIM115
    got = predict_uploads(engine, f"run-{run_id}", uploads)["predictions"]
    for want, have in zip(expected, got, strict=True):
        assert have["label"] == want["label"] and have["class"] == want["class"]
        assert abs(have["probability"] - want["probability"]) <= TOLERANCE
        assert np.allclose(
            list(have["probabilities"].values()),
            list(want["probabilities"].values()),
            atol=TOLERANCE,
        )


@pytest.mark.parametrize("key", list(RUNS))
def test_the_exported_file_under_onnxruntime_gives_the_stored_predictions(
    served_runs,
    key,
    tmp_path,
):
    run_id = served_runs.runs[key]
    out = export_model(get_engine(served_runs.url), run_id, tmp_path / "model.onnx")
    assert out["source"] == "weights" and out["bytes"] == (tmp_path / "model.onnx").stat().st_size
    pixels, stored, predicted, _ = _stored(served_runs, run_id)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    proba, label = session.run(None, {"images": pixels.astype(np.float32) / np.float32(255)})
    assert np.abs(proba - stored).max() <= TOLERANCE
    assert label.tolist() == predicted.tolist()
    meta = session.get_modelmeta().custom_metadata_map
    with psycopg.connect(served_runs.conninfo) as conn:
        names, prep = conn.execute(
            "SELECT array_agg(c.name ORDER BY c.label), d.preprocessing FROM signdb.runs r "
            "JOIN signdb.datasets d ON d.id = r.dataset_id JOIN signdb.classes c "
            "ON c.dataset_id = d.id AND c.label = ANY(r.classes) WHERE r.id = %s "
            "GROUP BY d.preprocessing",
            [run_id],
        ).fetchone()
    assert json.loads(meta["signdb.classes"]) == names
    assert json.loads(meta["signdb.preprocessing"]) == prep
    assert meta["signdb.run_id"] == str(run_id)


def test_metadata_describes_inputs_outputs_and_classes(served_runs):
    run_id = served_runs.runs["cnn-torch"]
    meta = resolve_model(get_engine(served_runs.url), f"run-{run_id}").metadata()
    assert meta["name"] == f"run-{run_id}" and meta["versions"] == [str(run_id)]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 16, 16, 3]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    params = meta["parameters"]
    assert params["classes"] == ["0", "1", "2"] and params["labels"] == [0, 1, 2]
    assert params["preprocessing"] == {"size": 16, "color": "rgb", "resample": "lanczos"}
    assert params["input_datatypes"] == ["UINT8", "FP32"]
