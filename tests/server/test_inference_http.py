"""Serving over HTTP: Triton's own client and a plain JSON client against a real ``signdb serve``,
MLflow's route, image uploads, aliases (editors only), and served predictions logged off the
request path. The serving core itself is tested in tests/db/test_serving_*.py."""

from __future__ import annotations

import io
import time
import uuid

import httpx
import numpy as np
import psycopg
import pytest
import tritonclient.http as triton
from PIL import Image

from signdb.access import create_token, revoke_token
from signdb.db.engine import get_engine
from signdb.serving import set_alias
from tests.server.test_serve import free_port, start, stop


@pytest.fixture(scope="module")
def tokens(served_runs):
    engine = get_engine(served_runs.url)
    suffix = uuid.uuid4().hex[:6]
    made = {
        role: create_token(engine, f"http-{role}-{suffix}", role) for role in ("viewer", "editor")
    }
    yield {role: token for role, (token, _) in made.items()}
    for _, record in made.values():
        revoke_token(engine, record.name)


@pytest.fixture(scope="module")
def server(served_runs, tokens):
    """A closed server (every request needs a token) that logs every served prediction."""
    proc, base, _ = start(
        served_runs.url, "--host", "0.0.0.0", "--port", str(free_port()),
        "--log-predictions", "1", "--invocations-model", "http-champion",
    )  # fmt: skip
    yield base
    assert stop(proc) == 0


def _auth(tokens, role: str = "viewer") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


def _stored(served_runs, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The run's test images (uint8 NHWC) and their stored probability vectors."""
    with psycopg.connect(served_runs.conninfo) as conn:
        rows = conn.execute(
            "SELECT i.pixels, i.height, i.width, i.channels, p.probabilities "
            "FROM signdb.predictions p JOIN signdb.images i ON i.id = p.image_id "
            "WHERE p.run_id = %s AND p.split = 'test' ORDER BY p.image_id LIMIT 8",
            [run_id],
        ).fetchall()
    pixels = np.stack([np.frombuffer(r[0], np.uint8).reshape(r[1], r[2], r[3]) for r in rows])
    return pixels, np.array([r[4] for r in rows], np.float32)


def test_health_needs_no_token_and_everything_else_does(server, tokens):
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server}/v2").status_code == 401
    assert httpx.get(f"{server}/v2", headers=_auth(tokens)).json()["name"] == "signdb"


@pytest.mark.parametrize("key", ["cnn-torch", "mlp-numpy"])
def test_tritons_own_client_is_served_the_stored_predictions(server, served_runs, tokens, key):
    run_id = served_runs.runs[key]
    pixels, stored = _stored(served_runs, run_id)
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    headers = _auth(tokens)
    name = f"run-{run_id}"
    assert client.is_server_live(headers=headers) and client.is_model_ready(name, headers=headers)
    meta = client.get_model_metadata(name, headers=headers)
    assert meta["inputs"][0]["shape"][1:] == list(pixels.shape[1:])
    images = triton.InferInput("images", list(pixels.shape), "UINT8")
    images.set_data_from_numpy(pixels)  # binary, Triton's default
    result = client.infer(name, [images], headers=headers)
    assert np.allclose(result.as_numpy("probabilities"), stored, atol=1e-5)
    assert result.get_response()["model_version"] == str(run_id)


def test_a_plain_json_client_and_an_alias_re_pointed_between_requests(server, served_runs, tokens):
    alias = f"live-{uuid.uuid4().hex[:6]}"
    engine = get_engine(served_runs.url)
    for key in ("logreg", "softmax"):
        run_id = served_runs.runs[key]
        set_alias(engine, alias, run_id, "tester")
        pixels, stored = _stored(served_runs, run_id)
        request = {"inputs": [{"name": "images", "shape": list(pixels.shape),
                               "datatype": "UINT8", "data": pixels.ravel().tolist()}]}  # fmt: skip
        response = httpx.post(f"{server}/v2/models/{alias}/infer", json=request,
                              headers=_auth(tokens))  # fmt: skip
        body = response.json()
        assert body["model_version"] == str(run_id)  # the run the alias points to now
        proba = next(o for o in body["outputs"] if o["name"] == "probabilities")
        assert np.allclose(np.array(proba["data"]).reshape(stored.shape), stored, atol=1e-5)


def test_bad_requests_are_4xx_naming_what_was_expected(server, served_runs, tokens):
    name = f"run-{served_runs.runs['softmax']}"
    wrong = {"inputs": [{"name": "images", "shape": [1, 3, 3, 1], "datatype": "UINT8",
                         "data": [0] * 9}]}  # fmt: skip
    response = httpx.post(f"{server}/v2/models/{name}/infer", json=wrong, headers=_auth(tokens))
    assert response.status_code == 400 and "16" in response.json()["error"]
    missing = httpx.get(f"{server}/v2/models/no-such-model", headers=_auth(tokens))
    assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]
    garbage = httpx.post(f"{server}/v2/models/{name}/infer", content=b"{not json",
                         headers=_auth(tokens))  # fmt: skip
    assert garbage.status_code == 400


def test_mlflow_route_and_image_uploads(server, served_runs, tokens):
    run_id = served_runs.runs["softmax"]
    set_alias(get_engine(served_runs.url), "http-champion", run_id, "tester")
    pixels, stored = _stored(served_runs, run_id)
    mlflow = httpx.post(f"{server}/invocations", json={"instances": pixels[:2].tolist()},
                        headers=_auth(tokens))  # fmt: skip
    assert mlflow.status_code == 200 and len(mlflow.json()["predictions"]) == 2
    files = []
    for i, image in enumerate(pixels[:3]):
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0]).save(buffer, format="PNG")
        files.append(("files", (f"digit{i}.png", buffer.getvalue(), "image/png")))
    files.append(("files", ("broken.png", b"not an image", "image/png")))
    refused = httpx.post(f"{server}/api/v1/models/http-champion/predict", files=files,
                         headers=_auth(tokens))  # fmt: skip
    assert refused.status_code == 422 and "broken.png" in refused.json()["error"]
    answered = httpx.post(f"{server}/api/v1/models/http-champion/predict", files=files[:3],
                          headers=_auth(tokens))  # fmt: skip
    predictions = answered.json()["predictions"]
    assert [p["file"] for p in predictions] == ["digit0.png", "digit1.png", "digit2.png"]
    assert np.allclose([p["probability"] for p in predictions], stored[:3].max(axis=1), atol=1e-5)


def test_only_an_editor_may_point_an_alias_and_the_history_names_the_token(
    server, served_runs, tokens
):
    alias = f"edit-{uuid.uuid4().hex[:6]}"
    run_id = served_runs.runs["mlp-torch"]
    url = f"{server}/api/v1/models/{alias}"
    viewer = httpx.put(url, json={"run_id": run_id}, headers=_auth(tokens, "viewer"))
    assert viewer.status_code == 403 and "editor token" in viewer.json()["error"]
    anonymous = httpx.put(url, json={"run_id": run_id})
    assert anonymous.status_code == 401
    edited = httpx.put(url, json={"run_id": run_id}, headers=_auth(tokens, "editor"))
    assert edited.status_code == 200, edited.text
    shown = httpx.get(url, headers=_auth(tokens)).json()
    assert shown["run_id"] == run_id
    assert shown["history"][0]["changed_by"].startswith("http-editor-")
    listed = httpx.get(f"{server}/api/v1/models", headers=_auth(tokens)).json()["models"]
    assert alias in {m["name"] for m in listed}


def test_served_predictions_are_logged_and_refused_ones_are_not(server, served_runs, tokens):
    # A model no other test of this module serves: their logged rows arrive on their own time.
    name = f"run-{served_runs.runs['logreg']}"
    pixels, _ = _stored(served_runs, served_runs.runs["logreg"])

    def logged() -> int:
        with psycopg.connect(served_runs.conninfo) as conn:
            return conn.execute(
                "SELECT count(*) FROM signdb.served_predictions WHERE model = %s", [name]
            ).fetchone()[0]

    before = logged()
    request = {"inputs": [{"name": "images", "shape": list(pixels.shape), "datatype": "UINT8",
                           "data": pixels.ravel().tolist()}]}  # fmt: skip
    assert httpx.post(f"{server}/v2/models/{name}/infer", json=request,
                      headers=_auth(tokens)).status_code == 200  # fmt: skip
    bad = {"inputs": [{"name": "images", "shape": [1, 2], "datatype": "UINT8", "data": [1, 2]}]}
    assert httpx.post(f"{server}/v2/models/{name}/infer", json=bad,
                      headers=_auth(tokens)).status_code == 400  # fmt: skip
    deadline = time.monotonic() + 15
    while logged() < before + len(pixels):
        assert time.monotonic() < deadline, "served predictions never reached the database"
        time.sleep(0.2)
    time.sleep(1.5)
    assert logged() == before + len(pixels)  # the refused request logged nothing
