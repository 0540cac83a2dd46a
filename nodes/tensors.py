"""Tensors on the wire: JSON request inputs and the Open Inference Protocol (v2) codec.

Covers the OIP JSON form and its binary tensor data extension (``Inference-Header-Content-Length``),
which Triton's and KServe's clients use by default.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from nodes.errors import RequestValidationError, request_error
from nodes.spec import DATATYPES, TensorSpec

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
BINARY_HEADER = "inference-header-content-length"
#: Deepest nesting a tensor may have (checked before any array is allocated).
MAX_TENSOR_DEPTH = 32
#: Most elements one input tensor may have (checked before any array is allocated).
MAX_TENSOR_ELEMENTS = 1 << 24


def datatype_of(array: np.ndarray) -> str:
    """OIP datatype name of a numpy array."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    for name, t in NUMPY_TYPES.items():
        if t is not np.object_ and array.dtype == np.dtype(t):
            return name
    raise TypeError(f"no OIP datatype for numpy dtype {array.dtype}")


def _shape_ok(expected: Sequence[int], got: Sequence[int]) -> bool:
    return len(expected) == len(got) and all(e in (-1, g) for e, g in zip(expected, got))


def _check_size(value: Any, field: str, shape: Sequence[int] | None) -> None:
    """Refuse tensors nested too deep or with too many elements before allocating them (the
    first element of each level gives the dimensions; ragged data fails in numpy later)."""
    if shape is not None:
        dims = list(shape)
    else:
        dims = []
        while isinstance(value, list):
            if len(dims) == MAX_TENSOR_DEPTH:
                raise RequestValidationError(field, f"nested deeper than {MAX_TENSOR_DEPTH} levels")
            dims.append(len(value))
            if not value:
                break
            value = value[0]
    if len(dims) > MAX_TENSOR_DEPTH:
        raise RequestValidationError(field, f"has more than {MAX_TENSOR_DEPTH} dimensions")
    if math.prod(dims) > MAX_TENSOR_ELEMENTS:
        raise RequestValidationError(
            field, f"has {math.prod(dims)} elements; at most {MAX_TENSOR_ELEMENTS} are accepted"
        )


def to_array(spec: TensorSpec, value: Any, field: str, shape: Sequence[int] | None = None) -> Any:
    """A request value as a numpy array of the spec's datatype and shape, or a 422 naming it.

    NaN and Infinity are refused unless the input declares ``allow_non_finite``.
    """
    _check_size(value, field, shape)
    try:
        if spec.datatype == "BYTES":
            array = np.asarray(value, dtype=np.object_)
        else:
            array = np.asarray(value, dtype=NUMPY_TYPES[spec.datatype])
        if shape is not None:
            array = array.reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestValidationError(
            field, f"cannot read as {spec.datatype} tensor of shape {spec.shape}: {exc}"
        ) from None
    if not _shape_ok(spec.shape, array.shape):
        raise RequestValidationError(
            field, f"expected shape {spec.shape} (-1: any size), got {list(array.shape)}"
        )
    if array.dtype.kind == "f" and not spec.allow_non_finite and not np.isfinite(array).all():
        raise RequestValidationError(
            field,
            "holds NaN or Infinity; declare allow_non_finite: true on the input to accept them",
        )
    return array


def decode_inputs(specs: Sequence[TensorSpec], inputs: Any) -> dict[str, Any]:
    """The ``inputs`` of ``POST /predict``: a dict by input name, or a bare tensor for one input."""
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            names = [s.name for s in specs]
            raise RequestValidationError("inputs", f"give an object with the inputs {names}")
        inputs = {specs[0].name: inputs}
    unknown = sorted(set(inputs) - {s.name for s in specs})
    if unknown:
        raise RequestValidationError(
            f"inputs.{unknown[0]}", f"unknown input; this graph takes {[s.name for s in specs]}"
        )
    payload = {}
    for spec in specs:
        if spec.name not in inputs:
            raise RequestValidationError(f"inputs.{spec.name}", "required input is missing")
        payload[spec.name] = to_array(spec, inputs[spec.name], f"inputs.{spec.name}")
    return payload


def to_json(value: Any) -> Any:
    """Numpy values (and containers of them) as plain JSON values; NaN and Infinity, which JSON
    cannot carry, become null."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [to_json(v) for v in value.tolist()]
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return [to_json(v) for v in value.tolist()] if value.ndim else to_json(value.item())
        return value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


# --- Open Inference Protocol -------------------------------------------------------------


def _bytes_elements(raw: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack_from("<I", raw, i)
        out.append(raw[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def _binary(tail: bytes, offset: int, size: Any, datatype: str, field: str) -> Any:
    """One tensor's bytes from the binary tail of a request."""
    if not isinstance(size, int) or size < 0 or offset + size > len(tail):
        raise RequestValidationError(
            field,
            f"{size!r} bytes from offset {offset} do not fit the {len(tail)}-byte binary data",
        )
    raw = tail[offset : offset + size]
    try:
        if datatype == "BYTES":
            return np.array(_bytes_elements(raw), dtype=np.object_)
        return np.frombuffer(raw, dtype=NUMPY_TYPES[datatype])
    except (ValueError, struct.error) as exc:
        raise RequestValidationError(field, f"cannot read {datatype} data: {exc}") from None


#: OIP ``$parameters`` values: booleans, numbers and strings.
Parameters = dict[str, StrictBool | int | float | str]


class _OIPModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OIPInputParameters(_OIPModel):
    """Parameters of one request tensor (the binary extension's ``binary_data_size``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    binary_data_size: int | None = Field(
        None, ge=0, description="Bytes of this tensor in the binary tail (binary extension)."
    )


class OIPInputTensor(_OIPModel):
    """One input tensor of an OIP inference request."""

    name: str = Field(description="Input name, as the model metadata lists it.")
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        description="Shape of the tensor.", max_length=MAX_TENSOR_DEPTH
    )
    datatype: Literal[DATATYPES] = Field(description="OIP datatype.")  # type: ignore[valid-type]
    parameters: OIPInputParameters | None = Field(None, description="Tensor parameters.")
    data: Any = Field(None, description="Tensor data, flat or nested, row-major.")


class OIPOutputParameters(_OIPModel):
    """Parameters of one requested output (the binary extension's ``binary_data``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    binary_data: StrictBool | None = Field(None, description="Send this output as binary.")


class OIPRequestedOutput(_OIPModel):
    """An output the client asks for."""

    name: str = Field(description="Output name, as the model metadata lists it.")
    parameters: OIPOutputParameters | None = Field(None, description="Output parameters.")


class OIPInferRequest(_OIPModel):
    """Body of an OIP ``infer`` request (JSON part)."""

    id: str | None = Field(None, description="Request id, echoed in the response.")
    parameters: Parameters | None = Field(
        None, description="Request parameters, e.g. binary_data_output."
    )
    inputs: list[OIPInputTensor] = Field(min_length=1, description="Input tensors.")
    outputs: list[OIPRequestedOutput] | None = Field(None, description="Outputs to return.")


def parse_oip_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """Split an OIP request into its JSON part (validated by :class:`OIPInferRequest`) and binary
    tail (empty without the extension)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise RequestValidationError(
                "Inference-Header-Content-Length", f"must be an integer, got {header_length!r}"
            ) from None
        if not 0 <= n <= len(body):
            raise RequestValidationError(
                "Inference-Header-Content-Length", f"{n} does not fit the {len(body)}-byte body"
            )
        head, tail = body[:n], body[n:]
    else:
        head, tail = body, b""
    try:
        request = OIPInferRequest.model_validate_json(head)
    except ValidationError as exc:
        raise request_error(exc, brackets=True) from None
    return request.model_dump(exclude_none=True), tail


def decode_oip_inputs(
    specs: Sequence[TensorSpec], request: Mapping[str, Any], tail: bytes
) -> dict[str, Any]:
    """The tensors of an OIP ``infer`` request, checked against the graph's inputs."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestValidationError("inputs", "a non-empty list of tensors is required")
    by_name = {s.name: s for s in specs}
    payload: dict[str, Any] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        field = f"inputs[{i}]"
        if not isinstance(tensor, Mapping):
            raise RequestValidationError(field, "each input is an object")
        for key in ("name", "shape", "datatype"):
            if key not in tensor:
                raise RequestValidationError(f"{field}.{key}", "required key is missing")
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        if name not in by_name:
            raise RequestValidationError(
                f"{field}.name", f"unknown input {name!r}; this graph takes {sorted(by_name)}"
            )
        if datatype not in NUMPY_TYPES:
            raise RequestValidationError(f"{field}.datatype", f"unknown datatype {datatype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise RequestValidationError(f"{field}.shape", f"a list of sizes, got {shape!r}")
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            data: Any = _binary(
                tail, offset, size, datatype, f"{field}.parameters.binary_data_size"
            )
            offset += int(size)
        elif "data" in tensor:
            data = tensor["data"]
        else:
            raise RequestValidationError(f"{field}.data", "required key is missing")
        payload[name] = to_array(by_name[name], data, f"{field}.data", shape)
    missing = [s.name for s in specs if s.name not in payload]
    if missing:
        raise RequestValidationError("inputs", f"missing inputs {missing}")
    return payload


def encode_oip_response(
    model: str,
    version: str,
    request: Mapping[str, Any],
    outputs: Mapping[str, Any],
    request_id: str,
) -> tuple[bytes, dict[str, str]]:
    """An OIP ``infer`` response (JSON, or JSON + binary tail when the client asked for it)."""
    params = request.get("parameters") or {}
    all_binary = bool(params.get("binary_data_output"))
    wanted = request.get("outputs")
    if wanted:
        names = [o["name"] for o in wanted]
        binary = {
            o["name"]: bool((o.get("parameters") or {}).get("binary_data", all_binary))
            for o in wanted
        }
        unknown = [n for n in names if n not in outputs]
        if unknown:
            raise RequestValidationError(
                "outputs", f"unknown outputs {unknown}; the graph returns {sorted(outputs)}"
            )
    else:
        names = list(outputs)
        binary = dict.fromkeys(names, all_binary)
    tensors, blobs = [], []
    for name in names:
        array = np.asarray(outputs[name])
        if array.dtype.kind in "US":
            array = array.astype(np.object_)
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary[name]:
            if datatype == "BYTES":
                blob = b"".join(
                    struct.pack("<I", len(b)) + b
                    for b in (v if isinstance(v, bytes) else str(v).encode() for v in array.ravel())
                )
            else:
                blob = np.ascontiguousarray(array).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = to_json(array.ravel())
        tensors.append(entry)
    response = {
        "model_name": model,
        "model_version": version,
        "id": request.get("id") or request_id,
        "outputs": tensors,
    }
    head = json.dumps(response).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        BINARY_HEADER: str(len(head)),
    }
