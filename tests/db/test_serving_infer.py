"""The serving routes' functions on real runs: the protocol end to end, bad input, roles, re-pointing."""

from __future__ import annotations

import io
import json
import threading
import uuid

import numpy as np
import psycopg
import pytest
import tritonclient.http as triton
from PIL import Image
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from signdb.db.engine import get_engine
from signdb.errors import (
    ImageError,
    InputError,
    InvalidArgument,
    ModelNotFound,
    ModelNotServable,
    TensorError,
)
from signdb.serving import (
    PredictionLog,
    infer,
    invocations,
    model_metadata,
    model_ready,
    predict_uploads,
    resolve_model,
    server_metadata,
    set_alias,
)
from signdb.serving.models import CACHE, MAX_BATCH


def _alias(runs, key: str) -> str:
    name = f"a-{uuid.uuid4().hex[:8]}"
    set_alias(get_engine(runs.url), name, runs.runs[key], "tester")
    return name


def _triton_body(array: np.ndarray, datatype: str, *, binary: bool = True):
    tensor = triton.InferInput("images", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return triton.InferenceServerClient.generate_request_body([tensor])


def _pixels(n: int, shape=(16, 16, 1), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_a_triton_client_request_is_answered_by_the_aliased_run(served_runs):
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "mlp-numpy")
    pixels = _pixels(4)
    body, json_size = _triton_body(pixels, "UINT8")
    response = infer(engine, name, body, json_size)
    header = int(response.headers["Inference-Header-Content-Length"])
    result = triton.InferenceServerClient.parse_response_body(response.body, header_length=header)
    expected, labels = resolve_model(engine, name).infer(pixels)
    assert np.array_equal(result.as_numpy("probabilities"), expected)
    assert np.array_equal(result.as_numpy("label"), labels)
    assert result.get_response()["model_name"] == name
    assert result.get_response()["model_version"] == str(served_runs.runs["mlp-numpy"])


def test_a_plain_json_client_following_the_protocol_text_works(served_runs):
    engine = get_engine(served_runs.url)
    run = f"run-{served_runs.runs['softmax']}"
    meta = model_metadata(engine, run)
    (inp,) = meta["inputs"]
    pixels = _pixels(2, tuple(inp["shape"][1:]))
    request = {
        "id": "q1",
        "inputs": [
            {
                "name": inp["name"],
                "shape": [2, *inp["shape"][1:]],
                "datatype": inp["datatype"],
                "data": pixels.ravel().tolist(),
            }
        ],
    }
    response = infer(engine, run, json.dumps(request).encode())
    assert response.content_type == "application/json"
    body = json.loads(response.body)
    assert body["id"] == "q1" and body["model_name"] == run
    outputs = {o["name"]: o for o in body["outputs"]}
    k = len(meta["parameters"]["classes"])
    assert outputs["probabilities"]["shape"] == [2, k] and outputs["label"]["shape"] == [2]
    proba = np.array(outputs["probabilities"]["data"]).reshape(2, k)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    labels = meta["parameters"]["labels"]
    assert outputs["label"]["data"] == [labels[i] for i in proba.argmax(axis=1)]


def test_server_metadata_and_readiness(served_runs):
    assert server_metadata()["extensions"] == ["binary_tensor_data"]
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "logreg")
    assert model_ready(engine, name) == {"name": name, "ready": True}
    run_id = served_runs.runs["logreg"]
    assert model_metadata(engine, name, version=str(run_id))["versions"] == [str(run_id)]
    with pytest.raises(ModelNotFound, match=f"its one version is {run_id}"):
        model_metadata(engine, name, version="999")


def test_re_pointing_an_alias_takes_effect_on_the_next_request(served_runs):
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "softmax")
    body = json.dumps({"inputs": [_json_input(_pixels(1))]}).encode()
    assert json.loads(infer(engine, name, body).body)["model_version"] == str(
        served_runs.runs["softmax"]
    )
    set_alias(engine, name, served_runs.runs["mlp-numpy"], "tester")
    assert json.loads(infer(engine, name, body).body)["model_version"] == str(
        served_runs.runs["mlp-numpy"]
    )


def _json_input(pixels: np.ndarray) -> dict:
    return {
        "name": "images",
        "shape": list(pixels.shape),
        "datatype": "UINT8",
        "data": pixels.ravel().tolist(),
    }


def test_concurrent_requests_during_re_pointing_get_the_old_or_the_new_run(served_runs):
    engine = get_engine(served_runs.url)
    a, b = served_runs.runs["softmax"], served_runs.runs["mlp-numpy"]
    name = _alias(served_runs, "softmax")
    pixels = _pixels(3, seed=5)
    expected = {str(run): resolve_model(engine, f"run-{run}").infer(pixels)[0] for run in (a, b)}
    body, json_size = _triton_body(pixels, "UINT8")
    answers: list[tuple[str, np.ndarray]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                response = infer(engine, name, body, json_size)
                header = int(response.headers["Inference-Header-Content-Length"])
                result = triton.InferenceServerClient.parse_response_body(
                    response.body, header_length=header
                )
                answers.append(
                    (result.get_response()["model_version"], result.as_numpy("probabilities"))
                )
            except BaseException as e:  # noqa: BLE001 - every failure is the test's finding
                errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(20):
        set_alias(engine, name, b if i % 2 == 0 else a, "flipper")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert {version for version, _ in answers} == {str(a), str(b)}
    for version, proba in answers:
        assert np.array_equal(proba, expected[version])


@pytest.fixture
def refused(served_runs):
    """A logging engine and alias; after the test, nothing at all was logged for it."""
    engine = get_engine(served_runs.url)
    name = _alias(served_runs, "cnn-torch")  # 16x16 RGB
    log = PredictionLog(engine, 1.0, interval=0.05)
    yield engine, name, log
    log.close()
    assert log.stats.written == 0 and log.stats.dropped == 0
    with psycopg.connect(served_runs.conninfo) as conn:
        logged = conn.execute(
            "SELECT count(*) FROM signdb.served_predictions WHERE model = %s", [name]
        ).fetchone()[0]
    assert logged == 0


BAD_TENSORS = {
    "gray where the model takes RGB": (
        np.zeros((1, 16, 16, 1), np.uint8),
        "got [1, 16, 16, 1]: the images have 1 channel where the model takes 3 channels (RGB)",
    ),
    "the wrong size": (np.zeros((1, 32, 32, 3), np.uint8), "resize the images to 16x16"),
    "no batch dimension": (np.zeros((16, 16, 3), np.uint8), "add the batch dimension N"),
    "INT32 pixels": (np.zeros((1, 16, 16, 3), np.int32), "got datatype INT32"),
    "FP32 above 1": (
        np.full((1, 16, 16, 3), 255.0, np.float32),
        "FP32 pixels must be within [0, 1]",
    ),
    "an empty batch": (
        np.zeros((0, 16, 16, 3), np.uint8),
        "with 1 to 1024 images a request; got N = 0",
    ),
    "too many images": (
        np.zeros((MAX_BATCH + 1, 16, 16, 3), np.uint8),
        f"got N = {MAX_BATCH + 1}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_a_bad_tensor_is_a_4xx_naming_the_expected_input_and_logs_nothing(refused, case):
    engine, name, log = refused
    array, message = BAD_TENSORS[case]
    datatype = {"uint8": "UINT8", "int32": "INT32", "float32": "FP32"}[array.dtype.name]
    body, json_size = _triton_body(array, datatype)
    with pytest.raises(TensorError) as e:
        infer(engine, name, body, json_size, log=log)
    assert message in str(e.value)
    assert f"model {name!r} takes images [N, 16, 16, 3] (16x16 rgb)" in str(e.value)
    log.flush()


def test_two_inputs_and_unknown_outputs_are_refused(refused):
    engine, name, log = refused
    one = _json_input(np.zeros((1, 16, 16, 3), np.uint8))
    two = json.dumps({"inputs": [one, {**one, "name": "more"}]}).encode()
    with pytest.raises(TensorError, match=r'takes one input.*has 2: \["images", "more"\]'):
        infer(engine, name, two, log=log)
    logits = json.dumps({"inputs": [one], "outputs": [{"name": "logits"}]}).encode()
    with pytest.raises(TensorError, match="no output 'logits'; its outputs are probabilities and"):
        infer(engine, name, logits, log=log)


def test_unknown_models_are_not_found(refused, served_runs):
    engine, _, log = refused
    body = json.dumps({"inputs": [_json_input(np.zeros((1, 16, 16, 1), np.uint8))]}).encode()
    with pytest.raises(ModelNotFound, match="no alias has that name; `signdb models list`"):
        infer(engine, "no-such-alias", body, log=log)
    with pytest.raises(ModelNotFound, match="there is no run 987654"):
        infer(engine, "run-987654", body, log=log)


def test_an_undecodable_upload_names_the_file(refused):
    engine, name, log = refused
    good = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(good, format="PNG")
    files = [("ok.png", good.getvalue()), ("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg")]
    with pytest.raises(ImageError, match="broken.jpg: truncated or corrupt JPEG"):
        predict_uploads(engine, name, files, log=log)
    with pytest.raises(InvalidArgument, match="at least one image file"):
        predict_uploads(engine, name, [], log=log)


def test_a_bad_mlflow_request_is_refused(refused):
    engine, name, log = refused
    with pytest.raises(TensorError, match="each image must be"):
        invocations(engine, name, b'{"inputs": [[1, 2, 3]]}', "application/json", log=log)


def test_runs_that_cannot_be_served_say_why(served_runs):
    engine = get_engine(served_runs.url)
    with psycopg.connect(served_runs.conninfo, autocommit=True) as conn:
        failed = conn.execute(
            "INSERT INTO signdb.runs (dataset_id, model, classes, hyperparams, seed, test_fraction, "
            "engine, status) SELECT dataset_id, model, classes, hyperparams, seed, test_fraction, "
            "engine, 'failed' FROM signdb.runs WHERE id = %s RETURNING id",
            [served_runs.runs["softmax"]],
        ).fetchone()[0]
    with pytest.raises(ModelNotServable, match=f"run {failed} has no final weights"):
        resolve_model(engine, f"run-{failed}")
    with pytest.raises(ModelNotServable):
        set_alias(engine, "never", failed, "tester")


def test_an_alias_whose_run_lost_its_final_weights_is_refused(served_runs):
    from signdb.training import TrainerSettings, TrainSpec, train

    engine = get_engine(served_runs.url)
    spec = TrainSpec(
        dataset="mini16", model="softmax", classes=[0, 1], hyperparams={"iterations": 1},
        trainer=TrainerSettings(),
    )  # fmt: skip
    run_id = train(engine, spec).run_id
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    set_alias(engine, name, run_id, "tester")
    with psycopg.connect(served_runs.conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM signdb.weights WHERE run_id = %s", [run_id])
    with pytest.raises(ModelNotServable, match=f"run {run_id} has no final weights") as e:
        resolve_model(engine, name)
    assert isinstance(e.value, InputError)


def _role_engine(url: str, role: str, read_only: bool):
    """An engine whose every transaction runs as ``role``, the way signdb serve's are."""
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))

    @event.listens_for(engine, "begin")
    def _begin(conn):  # noqa: ANN001
        if read_only:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL ROLE {role}")

    return engine


def test_a_viewers_read_only_analyst_transactions_can_serve_and_a_writer_can_log(served_runs):
    viewer = _role_engine(served_runs.url, "signdb_analyst", read_only=True)
    writer = _role_engine(served_runs.url, "signdb_writer", read_only=False)
    name = _alias(served_runs, "cnn-numpy")
    CACHE.clear()  # load through the viewer's transactions, not from the cache
    log = PredictionLog(writer, 1.0, interval=0.05)
    try:
        body, json_size = _triton_body(_pixels(2), "UINT8")
        response = infer(viewer, name, body, json_size, log=log)
        assert response.headers["Inference-Header-Content-Length"]
        log.flush()
        assert log.stats.written == 2 and log.stats.last_error is None
    finally:
        log.close()
        viewer.dispose()
        writer.dispose()
