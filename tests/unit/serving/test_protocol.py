"""The Open Inference Protocol codecs against the protocol's text and Triton's own client.

``tritonclient.http.InferenceServerClient.generate_request_body`` makes exactly
the bytes Triton's Python client sends (binary tensors by default), and
``parse_response_body`` reads a response as that client does: if they agree
with these codecs, the client works against signdb unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton

from signdb.errors import TensorError
from signdb.serving.protocol import (
    HEADER_LENGTH,
    encode_infer_response,
    error_body,
    parse_infer_request,
)

OUTPUTS = {
    "probabilities": np.array([[0.25, 0.75], [0.9, 0.1]], np.float32),
    "label": np.array([7, 3], np.int64),
}


def _triton_request(array, datatype, *, binary=True, outputs=None, request_id=""):
    tensor = triton.InferInput("images", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, request_id=request_id
    )


def test_the_protocol_texts_json_example_parses():
    # The inference request example of the KServe V2 / Open Inference Protocol REST text.
    body = json.dumps(
        {
            "id": "42",
            "inputs": [
                {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
                {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
            ],
            "outputs": [{"name": "output0"}],
        }
    ).encode()
    request = parse_infer_request(body)
    assert request.id == "42"
    first, second = request.inputs
    assert first.datatype == "UINT32" and first.array.dtype == np.uint32
    assert first.array.tolist() == [[1, 2], [3, 4]]
    assert second.array.tolist() == [True, False, True]
    assert [o.name for o in request.outputs] == ["output0"]


def test_nested_and_flat_data_are_the_same_row_major_tensor():
    flat = {"name": "x", "shape": [1, 2, 2, 1], "datatype": "FP32", "data": [0, 0.5, 0.25, 1]}
    nested = {**flat, "data": [[[[0], [0.5]], [[0.25], [1]]]]}
    a = parse_infer_request(json.dumps({"inputs": [flat]}).encode()).inputs[0].array
    b = parse_infer_request(json.dumps({"inputs": [nested]}).encode()).inputs[0].array
    assert a.dtype == np.float32 and np.array_equal(a, b) and a[0, 0, 1, 0] == 0.5


def test_json_response_follows_the_protocol_and_tritons_client_reads_it():
    request = parse_infer_request(json.dumps({"id": "r1", "inputs": [_uint8_input()]}).encode())
    response = encode_infer_response(request, "champion", "12", OUTPUTS)
    assert response.content_type == "application/json" and response.headers == {}
    body = json.loads(response.body)
    assert body == {
        "model_name": "champion",
        "model_version": "12",
        "id": "r1",
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [2, 2],
                "data": [0.25, 0.75, 0.8999999761581421, 0.10000000149011612],
            },
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [7, 3]},
        ],
    }
    result = triton.InferenceServerClient.parse_response_body(response.body)
    assert np.array_equal(result.as_numpy("probabilities"), OUTPUTS["probabilities"])
    assert np.array_equal(result.as_numpy("label"), OUTPUTS["label"])


@pytest.mark.parametrize("datatype", ["UINT8", "FP32"])
def test_tritons_default_binary_request_and_response_round_trip(datatype):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 4, 4, 1), dtype=np.uint8)
    array = pixels if datatype == "UINT8" else pixels.astype(np.float32) / 255
    body, json_size = _triton_request(array, datatype, request_id="abc")
    assert json_size is not None  # binary: the JSON's length goes in the header
    request = parse_infer_request(body, header_length=str(json_size))
    (tensor,) = request.inputs
    assert tensor.datatype == datatype and np.array_equal(tensor.array, array)
    assert request.id == "abc" and request.binary_output  # no outputs named: all binary
    response = encode_infer_response(request, "m", "5", OUTPUTS)
    assert response.content_type == "application/octet-stream"
    header = int(response.headers[HEADER_LENGTH])
    described = json.loads(response.body[:header])["outputs"]
    assert [o["parameters"]["binary_data_size"] for o in described] == [16, 16]
    assert all("data" not in o for o in described)
    result = triton.InferenceServerClient.parse_response_body(response.body, header_length=header)
    assert np.array_equal(result.as_numpy("probabilities"), OUTPUTS["probabilities"])
    assert np.array_equal(result.as_numpy("label"), OUTPUTS["label"])
    assert result.get_response()["id"] == "abc"


def test_each_requested_output_comes_back_as_it_asked():
    outputs = [
        triton.InferRequestedOutput("label", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=True),
    ]
    body, json_size = _triton_request(np.zeros((2, 4, 4, 1), np.uint8), "UINT8", outputs=outputs)
    request = parse_infer_request(body, json_size)
    response = encode_infer_response(request, "m", "5", OUTPUTS)
    header = int(response.headers[HEADER_LENGTH])
    described = json.loads(response.body[:header])["outputs"]
    assert [o["name"] for o in described] == ["label", "probabilities"]  # the request's order
    assert described[0]["data"] == [7, 3] and "parameters" not in described[0]
    assert described[1]["parameters"] == {"binary_data_size": 16}
    assert len(response.body) == header + 16
    result = triton.InferenceServerClient.parse_response_body(response.body, header_length=header)
    assert np.array_equal(result.as_numpy("probabilities"), OUTPUTS["probabilities"])


def test_a_json_request_from_tritons_client_needs_no_header():
    outputs = [triton.InferRequestedOutput("label", binary_data=False)]
    body, json_size = _triton_request(
        np.ones((1, 2, 2, 1), np.uint8), "UINT8", binary=False, outputs=outputs
    )
    assert json_size is None
    request = parse_infer_request(body)
    assert request.inputs[0].array.tolist() == [[[[1], [1]], [[1], [1]]]]
    response = encode_infer_response(request, "m", None, OUTPUTS)
    assert "model_version" not in json.loads(response.body)  # no versioning: no field


def _uint8_input(**kw):
    return {
        "name": "images",
        "shape": [1, 2, 2, 1],
        "datatype": "UINT8",
        "data": [1, 2, 3, 4],
        **kw,
    }


BAD_REQUESTS = {
    "not json": (b"{nope", None, "not valid JSON"),
    "no inputs": (b'{"outputs": []}', None, '"inputs"'),
    "unknown datatype": (
        json.dumps({"inputs": [_uint8_input(datatype="FLOAT")]}).encode(),
        None,
        "datatype 'FLOAT'; image inputs are \"UINT8\"",
    ),
    "BYTES": (
        json.dumps({"inputs": [_uint8_input(datatype="BYTES")]}).encode(),
        None,
        "datatype 'BYTES'",
    ),
    "shape not a list": (
        json.dumps({"inputs": [_uint8_input(shape="1x2")]}).encode(),
        None,
        'needs a "shape"',
    ),
    "too few values": (
        json.dumps({"inputs": [_uint8_input(data=[1, 2, 3])]}).encode(),
        None,
        "shape [1, 2, 2, 1] (4 values) but its data holds 3",
    ),
    "ragged": (
        json.dumps({"inputs": [_uint8_input(data=[[1, 2], [3]])]}).encode(),
        None,
        "ragged",
    ),
    "uint8 out of range": (
        json.dumps({"inputs": [_uint8_input(data=[1, 2, 3, 256])]}).encode(),
        None,
        "UINT8 holds 0..255, but the data has 256",
    ),
    "uint8 fraction": (
        json.dumps({"inputs": [_uint8_input(data=[1, 2, 3, 0.5])]}).encode(),
        None,
        "whole numbers",
    ),
    "strings": (
        json.dumps({"inputs": [_uint8_input(data=["a", "b", "c", "d"])]}).encode(),
        None,
        "must hold numbers",
    ),
    "no data": (
        json.dumps({"inputs": [{k: v for k, v in _uint8_input().items() if k != "data"}]}).encode(),
        None,
        'no "data"',
    ),
    "id not a string": (
        json.dumps({"id": 5, "inputs": [_uint8_input()]}).encode(),
        None,
        '"id" must be a string',
    ),
    "header longer than body": (b'{"inputs": []}', 999, "Inference-Header-Content-Length is 999"),
    "header not a number": (b'{"inputs": []}', "abc", "Inference-Header-Content-Length is 'abc'"),
    "binary size disagrees with shape": (
        json.dumps(
            {"inputs": [_uint8_input(data=None, parameters={"binary_data_size": 3})]}
        ).encode()
        + b"\x00\x00\x00",
        len(json.dumps({"inputs": [_uint8_input(data=None, parameters={"binary_data_size": 3})]})),
        "(4 bytes), but binary_data_size is 3",
    ),
    "binary missing": (
        json.dumps({"inputs": [_uint8_input(parameters={"binary_data_size": 4})]}).encode(),
        len(json.dumps({"inputs": [_uint8_input(parameters={"binary_data_size": 4})]})),
        "needs 4 bytes of binary data, but only 0 follow",
    ),
    "bytes left over": (
        json.dumps({"inputs": [_uint8_input()]}).encode() + b"\x01\x02",
        len(json.dumps({"inputs": [_uint8_input()]})),
        "carries 2 bytes of binary tensor data after its JSON, but its inputs' binary_data_size "
        "add up to 0",
    ),
    "classification extension": (
        json.dumps(
            {
                "inputs": [_uint8_input()],
                "outputs": [{"name": "label", "parameters": {"classification": 3}}],
            }
        ).encode(),
        None,
        "classification extension is not supported",
    ),
    "binary flag not a bool": (
        json.dumps(
            {"inputs": [_uint8_input()], "parameters": {"binary_data_output": "yes"}}
        ).encode(),
        None,
        "binary_data_output must be true or false",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_malformed_request_is_refused_naming_what_is_wrong(case):
    body, header, message = BAD_REQUESTS[case]
    with pytest.raises(TensorError) as e:
        parse_infer_request(body, header)
    assert message in str(e.value)


def test_an_unknown_requested_output_is_named_with_the_real_ones():
    request = parse_infer_request(
        json.dumps({"inputs": [_uint8_input()], "outputs": [{"name": "logits"}]}).encode()
    )
    with pytest.raises(
        TensorError, match="no output 'logits'; its outputs are probabilities, label"
    ):
        encode_infer_response(request, "m", "1", OUTPUTS)


def test_errors_are_the_protocols_error_object():
    assert json.loads(error_body("model 'x' not found")) == {"error": "model 'x' not found"}
