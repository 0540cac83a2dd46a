"""Tensors on the wire: /predict inputs, to_json, and the Open Inference Protocol codec."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from graphs.spec import TensorSpec
from nodes.errors import RequestValidationError
from nodes.tensors import (
    BINARY_HEADER,
    datatype_of,
    decode_inputs,
    decode_oip_inputs,
    encode_oip_response,
    parse_oip_request,
    to_json,
)

DIGITS = [TensorSpec(name="input", datatype="FP32", shape=[-1, 64])]
TWO = [
    TensorSpec(name="a", datatype="FP32", shape=[-1, 2]),
    TensorSpec(name="b", datatype="INT64", shape=[-1]),
]


def rve(fn: Any, *args: Any) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as info:
        fn(*args)
    return info.value


def binary_request(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), str(len(head))


def bytes_blob(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


# --- decode_inputs (POST /predict) -------------------------------------------------------------


def test_decode_inputs_dict_form() -> None:
    out = decode_inputs(TWO, {"a": [[1, 2], [3, 4]], "b": [5, 6]})
    assert list(out) == ["a", "b"]
    assert out["a"].dtype == np.float32
    assert out["b"].dtype == np.int64
    np.testing.assert_array_equal(out["a"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    np.testing.assert_array_equal(out["b"], np.array([5, 6], dtype=np.int64))


def test_decode_inputs_bare_tensor_for_one_input() -> None:
    out = decode_inputs(DIGITS, [[0.5] * 64])
    assert list(out) == ["input"]
    assert out["input"].shape == (1, 64)
    assert out["input"].dtype == np.float32
    assert float(out["input"].sum()) == 32.0


def test_decode_inputs_bare_tensor_needs_one_input() -> None:
    err = rve(decode_inputs, TWO, [[1, 2]])
    assert err.field == "inputs"
    assert err.message == "give an object with the inputs ['a', 'b']"


def test_decode_inputs_missing_input() -> None:
    err = rve(decode_inputs, TWO, {"a": [[1, 2]]})
    assert err.field == "inputs.b"
    assert err.message == "required input is missing"


def test_decode_inputs_unknown_input() -> None:
    err = rve(decode_inputs, TWO, {"a": [[1, 2]], "b": [1], "zz": [1]})
    assert err.field == "inputs.zz"
    assert err.message == "unknown input; this graph takes ['a', 'b']"


def test_decode_inputs_wrong_shape() -> None:
    err = rve(decode_inputs, DIGITS, {"input": [[0.0] * 63]})
    assert err.field == "inputs.input"
    assert err.message == "expected shape [-1, 64] (-1: any size), got [1, 63]"
    err = rve(decode_inputs, DIGITS, {"input": [0.0] * 64})
    assert err.message == "expected shape [-1, 64] (-1: any size), got [64]"


def test_decode_inputs_non_numeric() -> None:
    err = rve(decode_inputs, DIGITS, {"input": [["abc"] * 64]})
    assert err.field == "inputs.input"
    assert err.message.startswith("cannot read as FP32 tensor of shape [-1, 64]: ")
    assert "abc" in err.message


def test_decode_inputs_ragged() -> None:
    err = rve(decode_inputs, TWO, {"a": [[1, 2], [3]], "b": [1]})
    assert err.field == "inputs.a"
    assert err.message.startswith("cannot read as FP32 tensor of shape [-1, 2]: ")


def test_decode_inputs_bytes_input() -> None:
    spec = [TensorSpec(name="text", datatype="BYTES", shape=[-1])]
    out = decode_inputs(spec, {"text": ["hi", "there"]})
    assert out["text"].dtype == np.object_
    assert out["text"].tolist() == ["hi", "there"]


def test_request_validation_error_json() -> None:
    err = RequestValidationError("inputs.input", "bad")
    assert err.status_code == 422
    assert str(err) == "inputs.input: bad"
    assert err.to_json() == {
        "detail": [{"loc": ["body", "inputs", "input"], "msg": "bad", "type": "value_error"}]
    }


def test_decode_inputs_out_of_range_integer_is_a_422() -> None:
    spec = [TensorSpec(name="px", datatype="UINT8", shape=[-1])]
    err = rve(decode_inputs, spec, {"px": [1, 300]})
    assert err.field == "inputs.px"


# --- to_json / datatype_of ---------------------------------------------------------------------


def test_to_json() -> None:
    value = {
        "f": np.array([[0.5, 1.5]], dtype=np.float32),
        "i": np.int64(3),
        "s": np.array([b"ab", b"c"]),
        "u": np.array(["x", "y"]),
        "nested": [np.float64(0.25), (np.array([1, 2]), "plain")],
        "none": None,
    }
    out = to_json(value)
    assert out == {
        "f": [[0.5, 1.5]],
        "i": 3,
        "s": ["ab", "c"],
        "u": ["x", "y"],
        "nested": [0.25, [[1, 2], "plain"]],
        "none": None,
    }
    assert type(out["i"]) is int
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (np.bool_, "BOOL"),
        (np.uint8, "UINT8"),
        (np.uint16, "UINT16"),
        (np.uint32, "UINT32"),
        (np.uint64, "UINT64"),
        (np.int8, "INT8"),
        (np.int16, "INT16"),
        (np.int32, "INT32"),
        (np.int64, "INT64"),
        (np.float16, "FP16"),
        (np.float32, "FP32"),
        (np.float64, "FP64"),
        (np.object_, "BYTES"),
        ("S3", "BYTES"),
        ("U3", "BYTES"),
    ],
)
def test_datatype_of(dtype: Any, name: str) -> None:
    assert datatype_of(np.zeros(2, dtype=dtype)) == name


def test_datatype_of_unknown() -> None:
    with pytest.raises(TypeError, match="no OIP datatype for numpy dtype complex64"):
        datatype_of(np.zeros(2, dtype=np.complex64))


# --- OIP requests ------------------------------------------------------------------------------


ONE_INPUT = {"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]}


def test_parse_oip_request_json_form() -> None:
    body = json.dumps({"id": "7", "inputs": [ONE_INPUT]}).encode()
    request, tail = parse_oip_request(body, None)
    assert request == {"id": "7", "inputs": [ONE_INPUT]}
    assert tail == b""


def test_parse_oip_request_splits_binary_tail() -> None:
    body, n = binary_request({"inputs": [ONE_INPUT]}, b"\x01\x02\x03")
    request, tail = parse_oip_request(body, n)
    assert request == {"inputs": [ONE_INPUT]}
    assert tail == b"\x01\x02\x03"


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": [ONE_INPUT], "parameters": "x"}, "parameters"),
        ({"inputs": [{**ONE_INPUT, "name": ["a"]}]}, "inputs[0].name"),
        ({"inputs": [{**ONE_INPUT, "shape": [-1]}]}, "inputs[0].shape[0]"),
        ({"inputs": [{**ONE_INPUT, "datatype": "FP128"}]}, "inputs[0].datatype"),
        ({"inputs": [ONE_INPUT], "outputs": [{"name": 3}]}, "outputs[0].name"),
        ({"inputs": [ONE_INPUT], "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
)
def test_parse_oip_request_names_the_bad_field(request_body: Any, field: str) -> None:
    err = rve(parse_oip_request, json.dumps(request_body).encode(), None)
    assert err.field == field


def test_parse_oip_request_refuses_deep_nesting_as_422() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    body = '{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": ' + deep + "}]}"
    err = rve(parse_oip_request, body.encode(), None)
    assert err.status_code == 422


def test_nested_input_past_the_depth_cap_is_refused_before_numpy() -> None:
    value: Any = [1.0]
    for _ in range(40):
        value = [value]
    err = rve(decode_inputs, [TensorSpec(name="x", shape=[-1] * 41)], {"x": value})
    assert err.field == "inputs.x" and "deeper than" in err.message


def test_oip_shape_past_the_element_cap_is_refused_before_numpy() -> None:
    request = {
        "inputs": [{"name": "a", "shape": [1 << 20, 1 << 20], "datatype": "FP32", "data": [1.0]}]
    }
    err = rve(decode_oip_inputs, [TensorSpec(name="a", shape=[-1, -1])], request, b"")
    assert err.field == "inputs[0].data" and "elements" in err.message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_refused_unless_declared(bad: float) -> None:
    err = rve(decode_inputs, DIGITS, {"input": [[bad] + [0.0] * 63]})
    assert err.field == "inputs.input" and "NaN or Infinity" in err.message
    spec = [TensorSpec(name="input", shape=[-1, 64], allow_non_finite=True)]
    out = decode_inputs(spec, {"input": [[bad] + [0.0] * 63]})
    assert not np.isfinite(out["input"][0, 0])


def test_non_finite_outputs_are_valid_json() -> None:
    out = to_json({"p": np.array([[0.5, np.nan], [np.inf, 1.0]]), "s": float("nan")})
    assert out == {"p": [[0.5, None], [None, 1.0]], "s": None}
    json.loads(json.dumps(out, allow_nan=False))


@pytest.mark.parametrize(
    ("body", "header", "field", "message"),
    [
        (b"{}", "ten", "Inference-Header-Content-Length", "must be an integer, got 'ten'"),
        (b"{not json", None, "body", "not valid JSON: "),
        (b"[1, 2]", None, "body", "must be a JSON object"),
        (b'{"a": 1}xyz', "4", "body", "not valid JSON: "),
    ],
)
def test_parse_oip_request_errors(
    body: bytes, header: str | None, field: str, message: str
) -> None:
    err = rve(parse_oip_request, body, header)
    assert err.field == field
    assert err.message.startswith(message)


def test_decode_oip_json_form_reshapes_flat_data() -> None:
    request = {
        "inputs": [
            {"name": "b", "shape": [3], "datatype": "INT64", "data": [7, 8, 9]},
            {"name": "a", "shape": [3, 2], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
        ]
    }
    out = decode_oip_inputs(TWO, request, b"")
    assert out["a"].dtype == np.float32
    np.testing.assert_array_equal(out["a"], np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32))
    np.testing.assert_array_equal(out["b"], np.array([7, 8, 9], dtype=np.int64))


def test_decode_oip_binary_extension() -> None:
    a = np.array([[1.5, -2.0], [3.25, 4.0]], dtype=np.float32)
    b = np.array([10, -20, 30], dtype=np.int64)
    header = {
        "inputs": [
            {
                "name": "a",
                "shape": [2, 2],
                "datatype": "FP32",
                "parameters": {"binary_data_size": a.nbytes},
            },
            {
                "name": "b",
                "shape": [3],
                "datatype": "INT64",
                "parameters": {"binary_data_size": b.nbytes},
            },
        ]
    }
    body, n = binary_request(header, a.astype("<f4").tobytes(), b.astype("<i8").tobytes())
    request, tail = parse_oip_request(body, n)
    assert len(tail) == 16 + 24
    out = decode_oip_inputs(TWO, request, tail)
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    assert out["a"].dtype == np.float32
    assert out["b"].dtype == np.int64


def test_decode_oip_mixed_binary_and_json() -> None:
    b = np.array([1, 2], dtype=np.int64)
    header = {
        "inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 0.25]},
            {
                "name": "b",
                "shape": [2],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 16},
            },
        ]
    }
    body, n = binary_request(header, b.tobytes())
    out = decode_oip_inputs(TWO, *parse_oip_request(body, n))
    np.testing.assert_array_equal(out["a"], np.array([[0.5, 0.25]], dtype=np.float32))
    np.testing.assert_array_equal(out["b"], b)


def test_decode_oip_bytes_tensors() -> None:
    spec = [
        TensorSpec(name="s", datatype="BYTES", shape=[-1]),
        TensorSpec(name="t", datatype="BYTES", shape=[-1]),
    ]
    items = [b"hello", b"", "w\u00f6rld".encode()]
    blob = bytes_blob(items)
    header = {
        "inputs": [
            {
                "name": "s",
                "shape": [3],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob)},
            },
            {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["x", "yz"]},
        ]
    }
    body, n = binary_request(header, blob)
    out = decode_oip_inputs(spec, *parse_oip_request(body, n))
    assert out["s"].dtype == np.object_
    assert out["s"].tolist() == items
    assert out["t"].tolist() == ["x", "yz"]


@pytest.mark.parametrize(
    ("request_body", "field", "message"),
    [
        ({}, "inputs", "a non-empty list of tensors is required"),
        ({"inputs": []}, "inputs", "a non-empty list of tensors is required"),
        ({"inputs": [5]}, "inputs[0]", "each input is an object"),
        (
            {"inputs": [{"name": "a", "datatype": "FP32"}]},
            "inputs[0].shape",
            "required key is missing",
        ),
        (
            {"inputs": [{"name": "zz", "shape": [1], "datatype": "FP32", "data": [1]}]},
            "inputs[0].name",
            "unknown input 'zz'; this graph takes ['a', 'b']",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP8", "data": [1, 2]}]},
            "inputs[0].datatype",
            "unknown datatype 'FP8'",
        ),
        (
            {"inputs": [{"name": "a", "shape": [-1, 2], "datatype": "FP32", "data": [1, 2]}]},
            "inputs[0].shape",
            "a list of sizes, got [-1, 2]",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32"}]},
            "inputs[0].data",
            "required key is missing",
        ),
        (
            {"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]},
            "inputs[0].data",
            "cannot read as FP32 tensor of shape [-1, 2]: ",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
            "inputs[0].data",
            "expected shape [-1, 2] (-1: any size), got [1, 3]",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": ["x", "y"]}]},
            "inputs[0].data",
            "cannot read as FP32 tensor",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
            "inputs",
            "missing inputs ['b']",
        ),
    ],
)
def test_decode_oip_errors(request_body: dict[str, Any], field: str, message: str) -> None:
    err = rve(decode_oip_inputs, TWO, request_body, b"")
    assert err.field == field
    assert err.message.startswith(message)


def test_decode_oip_short_binary_tail_is_a_422() -> None:
    header = {
        "inputs": [
            {
                "name": "a",
                "shape": [2, 2],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 16},
            },
            {"name": "b", "shape": [1], "datatype": "INT64", "data": [1]},
        ]
    }
    body, n = binary_request(header, b"\x00" * 8)  # half the declared bytes
    err = rve(decode_oip_inputs, TWO, *parse_oip_request(body, n))
    assert err.field == "inputs[0].parameters.binary_data_size"
    assert err.message == "16 bytes from offset 0 do not fit the 8-byte binary data"


@pytest.mark.parametrize(
    ("datatype", "size"), [("FP32", 5), ("BYTES", 2)], ids=["misaligned-fp32", "short-bytes"]
)
def test_decode_oip_malformed_binary_is_a_422(datatype: str, size: int) -> None:
    spec = [TensorSpec(name="x", datatype=datatype, shape=[-1])]
    header = {
        "inputs": [
            {
                "name": "x",
                "shape": [1],
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    body, n = binary_request(header, b"\x01" * size)
    err = rve(decode_oip_inputs, spec, *parse_oip_request(body, n))
    assert err.field.startswith("inputs[0]")


# --- OIP responses -----------------------------------------------------------------------------

OUTPUTS = {
    "probabilities": np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32),
    "label": np.array([1, 0], dtype=np.int64),
}


def test_encode_json_response() -> None:
    body, headers = encode_oip_response("digits", "3", {"id": "req-1"}, OUTPUTS, "rid")
    assert headers == {"content-type": "application/json"}
    assert json.loads(body) == {
        "model_name": "digits",
        "model_version": "3",
        "id": "req-1",
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [2, 2],
                "data": [0.25, 0.75, 1.0, 0.0],
            },
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]},
        ],
    }


def test_encode_uses_request_id_when_request_has_none() -> None:
    body, _ = encode_oip_response("m", "1", {}, {"label": np.array([1])}, "rid-9")
    assert json.loads(body)["id"] == "rid-9"


def test_encode_binary_response() -> None:
    request = {"parameters": {"binary_data_output": True}}
    body, headers = encode_oip_response("digits", "1", request, OUTPUTS, "rid")
    assert headers["content-type"] == "application/octet-stream"
    n = int(headers[BINARY_HEADER])
    head = json.loads(body[:n])
    assert head["outputs"] == [
        {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [2, 2],
            "parameters": {"binary_data_size": 16},
        },
        {
            "name": "label",
            "datatype": "INT64",
            "shape": [2],
            "parameters": {"binary_data_size": 16},
        },
    ]
    assert len(body) == n + 32
    probs = np.frombuffer(body[n : n + 16], dtype="<f4").reshape(2, 2)
    label = np.frombuffer(body[n + 16 :], dtype="<i8")
    np.testing.assert_array_equal(probs, OUTPUTS["probabilities"])
    np.testing.assert_array_equal(label, OUTPUTS["label"])


def test_encode_requested_outputs_filter_and_order() -> None:
    request = {
        "outputs": [
            {"name": "label", "parameters": {"binary_data": True}},
        ]
    }
    body, headers = encode_oip_response("m", "1", request, OUTPUTS, "rid")
    n = int(headers[BINARY_HEADER])
    head = json.loads(body[:n])
    assert [o["name"] for o in head["outputs"]] == ["label"]
    np.testing.assert_array_equal(np.frombuffer(body[n:], dtype="<i8"), OUTPUTS["label"])


def test_encode_per_output_binary_overrides_default() -> None:
    request = {
        "parameters": {"binary_data_output": True},
        "outputs": [
            {"name": "label", "parameters": {"binary_data": False}},
            {"name": "probabilities"},
        ],
    }
    body, headers = encode_oip_response("m", "1", request, OUTPUTS, "rid")
    n = int(headers[BINARY_HEADER])
    head = json.loads(body[:n])
    assert head["outputs"][0] == {
        "name": "label",
        "datatype": "INT64",
        "shape": [2],
        "data": [1, 0],
    }
    assert head["outputs"][1]["parameters"] == {"binary_data_size": 16}
    assert len(body) == n + 16


def test_encode_json_only_when_requested_outputs_are_json() -> None:
    body, headers = encode_oip_response("m", "1", {"outputs": [{"name": "label"}]}, OUTPUTS, "rid")
    assert headers == {"content-type": "application/json"}
    assert json.loads(body)["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]}
    ]


def test_encode_unknown_requested_output() -> None:
    err = rve(encode_oip_response, "m", "1", {"outputs": [{"name": "nope"}]}, OUTPUTS, "rid")
    assert err.field == "outputs"
    assert err.message == "unknown outputs ['nope']; the graph returns ['label', 'probabilities']"


def test_encode_binary_bytes_output() -> None:
    request = {"parameters": {"binary_data_output": True}}
    body, headers = encode_oip_response("m", "1", request, {"s": np.array(["ab", "", "c"])}, "rid")
    n = int(headers[BINARY_HEADER])
    [entry] = json.loads(body[:n])["outputs"]
    expected = bytes_blob([b"ab", b"", b"c"])
    assert entry == {
        "name": "s",
        "datatype": "BYTES",
        "shape": [3],
        "parameters": {"binary_data_size": len(expected)},
    }
    assert body[n:] == expected


def test_encode_json_bytes_output() -> None:
    body, _ = encode_oip_response("m", "1", {}, {"s": np.array([b"ab", b"c"])}, "rid")
    assert json.loads(body)["outputs"][0]["data"] == ["ab", "c"]


# --- interoperability with Triton's own client ------------------------------------------------


def test_tritonclient_request_body_decodes_exactly() -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    x = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 3
    k = np.array([[1, -2]], dtype=np.int64)
    s = np.array([b"hello", b"", "w\u00f6rld".encode()], dtype=np.object_)
    inputs = [
        httpclient.InferInput("x", [3, 4], "FP32"),
        httpclient.InferInput("k", [1, 2], "INT64"),
        httpclient.InferInput("s", [3], "BYTES"),
    ]
    inputs[0].set_data_from_numpy(x, binary_data=True)
    inputs[1].set_data_from_numpy(k, binary_data=False)
    inputs[2].set_data_from_numpy(s, binary_data=True)
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        inputs, request_id="r1"
    )
    assert isinstance(header_length, int)
    specs = [
        TensorSpec(name="x", datatype="FP32", shape=[-1, 4]),
        TensorSpec(name="k", datatype="INT64", shape=[-1, 2]),
        TensorSpec(name="s", datatype="BYTES", shape=[-1]),
    ]
    request, tail = parse_oip_request(body, str(header_length))
    assert request["id"] == "r1"
    out = decode_oip_inputs(specs, request, tail)
    assert out["x"].dtype == np.float32
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["k"], k)
    assert out["s"].tolist() == s.tolist()


def test_tritonclient_json_only_request_body() -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    x = np.array([[0.5, 1.0]], dtype=np.float32)
    inp = httpclient.InferInput("a", [1, 2], "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    b = httpclient.InferInput("b", [1], "INT64")
    b.set_data_from_numpy(np.array([3], dtype=np.int64), binary_data=False)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([inp, b])
    assert header_length is None
    out = decode_oip_inputs(TWO, *parse_oip_request(body, None))
    np.testing.assert_array_equal(out["a"], x)
    np.testing.assert_array_equal(out["b"], np.array([3]))


def test_tritonclient_reads_binary_response() -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    outputs = {**OUTPUTS, "names": np.array(["one", "two"])}
    request = {"id": "abc", "parameters": {"binary_data_output": True}}
    body, headers = encode_oip_response("digits", "1", request, outputs, "rid")
    result = httpclient.InferResult.from_response_body(
        body, header_length=int(headers[BINARY_HEADER])
    )
    assert result.get_response()["id"] == "abc"
    probs = result.as_numpy("probabilities")
    assert probs.dtype == np.float32
    np.testing.assert_array_equal(probs, OUTPUTS["probabilities"])
    np.testing.assert_array_equal(result.as_numpy("label"), OUTPUTS["label"])
    assert result.as_numpy("names").tolist() == [b"one", b"two"]


def test_tritonclient_reads_json_response() -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    body, headers = encode_oip_response("digits", "1", {}, OUTPUTS, "rid")
    assert BINARY_HEADER not in headers
    result = httpclient.InferResult.from_response_body(body)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), OUTPUTS["probabilities"])
    np.testing.assert_array_equal(result.as_numpy("label"), OUTPUTS["label"])
