"""MLflow's /invocations formats, as its scoring server accepts them, holding images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from signdb.errors import TensorError
from signdb.serving.invocations import encode_invocations, parse_invocations

SHAPE = (2, 2, 1)
IMAGES = np.array([[[[0], [255]], [[128], [7]]], [[[1], [2]], [[3], [4]]]], np.uint8)
JSON = "application/json"


def _parse(obj, content_type=JSON, shape=SHAPE):
    return parse_invocations(json.dumps(obj).encode(), content_type, shape)


@pytest.mark.parametrize(
    "request_body",
    [
        {"instances": IMAGES.tolist()},  # nested [H][W][C]
        {"instances": IMAGES[..., 0].tolist()},  # [H][W] for gray
        {"instances": IMAGES.reshape(2, -1).tolist()},  # flat H*W*C
        {"instances": [{"images": image} for image in IMAGES.tolist()]},
        {"inputs": IMAGES.tolist()},
        {"inputs": {"images": IMAGES.tolist()}},
        {
            "dataframe_split": {
                "columns": ["p0", "p1", "p2", "p3"],
                "data": IMAGES.reshape(2, -1).tolist(),
            }
        },
        {"dataframe_split": {"columns": ["image"], "data": [[image] for image in IMAGES.tolist()]}},
        {"dataframe_records": [{"image": image} for image in IMAGES.tolist()]},
    ],
    ids=[
        "instances-nested",
        "instances-gray",
        "instances-flat",
        "instances-records",
        "inputs-list",
        "inputs-named",
        "dataframe_split-pixels",
        "dataframe_split-cell",
        "dataframe_records",
    ],
)
def test_every_mlflow_format_gives_the_same_uint8_batch(request_body):
    batch = _parse(request_body)
    assert batch.dtype == np.uint8 and np.array_equal(batch, IMAGES)


def test_fractions_are_fp32_pixels():
    batch = _parse({"inputs": (IMAGES / 255).tolist()})
    assert batch.dtype == np.float32 and np.allclose(batch * 255, IMAGES)


def test_the_charset_parameter_is_accepted_as_mlflow_accepts_it():
    assert len(_parse({"inputs": IMAGES.tolist()}, "application/json; charset=UTF-8")) == 2


@pytest.mark.parametrize(
    ("obj", "content_type", "message"),
    [
        (
            {"inputs": [], "instances": []},
            JSON,
            "exactly one of dataframe_split, dataframe_records",
        ),
        ({"columns": ["a"], "data": [[1]]}, JSON, "got keys columns, data"),
        ([[1, 2]], JSON, "got a list"),
        ({"inputs": IMAGES.tolist()}, "text/csv", "takes Content-Type application/json"),
        ({"inputs": IMAGES.tolist()}, "application/json; charset=latin-1", "UTF-8 JSON only"),
        ({"inputs": []}, JSON, "non-empty list of images"),
        ({"inputs": [[1, 2, 3]]}, JSON, "each image must be [2][2][1] or [2][2] or 4 values"),
        ({"inputs": [[1, 2], [3]]}, JSON, "ragged"),
        ({"inputs": [[1, 2, 3, 300]]}, JSON, "integer pixels are 0..255, got 300"),
        ({"inputs": [["a", "b", "c", "d"]]}, JSON, "must be numbers"),
        ({"inputs": {"a": [], "b": []}}, JSON, "must name one input"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, JSON, "has 2 columns"),
        ({"dataframe_records": [{"a": 1, "b": 2}]}, JSON, "one-field objects"),
    ],
)
def test_bad_requests_name_what_mlflow_clients_should_send(obj, content_type, message):
    with pytest.raises(TensorError) as e:
        _parse(obj, content_type)
    assert message in str(e.value)


def test_not_json_is_refused():
    with pytest.raises(TensorError, match="not valid JSON"):
        parse_invocations(b"p0,p1\n1,2", JSON, SHAPE)


def test_the_answer_is_mlflows_predictions_object_of_records():
    body = encode_invocations(
        np.array([[0.2, 0.8]], np.float32), np.array([7]), ["cat", "dog"], {3: "cat", 7: "dog"}
    )
    (record,) = json.loads(body)["predictions"]
    assert record["label"] == 7 and record["class"] == "dog"
    assert record["probabilities"] == pytest.approx({"cat": 0.2, "dog": 0.8})
