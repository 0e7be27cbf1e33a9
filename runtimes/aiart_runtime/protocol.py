"""Open Inference Protocol (KServe V2) JSON tensors: decoding and encoding.

Pure: no I/O. Everything a client can get wrong raises ``ProtocolError``
with a message the client can act on; the server turns it into a 400.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}


class ProtocolError(ValueError):
    """A request that does not follow the protocol; answered with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    id: str | None
    inputs: tuple[Tensor, ...]
    requested_outputs: tuple[str, ...] | None
    parameters: dict[str, Any] = field(default_factory=dict)
    # Outputs to send in binary (the binary data extension): named ones, or
    # every output when the request asked binary_data_output without naming any.
    binary_outputs: frozenset[str] = frozenset()
    binary_by_default: bool = False

    def wants_binary(self, name: str) -> bool:
        if self.requested_outputs is None:
            return self.binary_by_default
        return name in self.binary_outputs


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}parameters must be an object")
    for key, item in value.items():
        if not isinstance(item, (str, int, float, bool)) or item is None:
            raise ProtocolError(
                f"{where}parameters.{key} must be a string, number or boolean"
            )
    return value


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        out: list[Any] = []
        stack = [data]
        # Iterative flatten: a deeply nested body must not blow the stack.
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            else:
                out.append(item)
        return out
    return data


_BY_DTYPE = {np.dtype(t): name for name, t in DATATYPES.items() if t is not np.object_}


def datatype_of(array: npt.NDArray[Any]) -> str:
    # A dict lookup: this runs for every output of every request.
    name = _BY_DTYPE.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    raise ProtocolError(f"cannot express numpy dtype {array.dtype} as a protocol datatype")


def binary_tensor(
    raw: bytes, datatype: str, shape: list[int], where: str
) -> npt.NDArray[Any]:
    """One tensor of the binary data extension: little-endian, row-major;
    BYTES elements each carry a 4-byte little-endian length prefix."""
    count = math.prod(shape)  # math.prod: numpy's costs microseconds on a list
    if datatype == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise ProtocolError(f"{where}binary BYTES data is truncated")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise ProtocolError(f"{where}binary BYTES data is truncated")
            items.append(raw[pos : pos + length])
            pos += length
        if len(items) != count:
            raise ProtocolError(
                f"{where}binary data has {len(items)} elements but shape {shape} needs {count}")
        return np.array(items, dtype=object).reshape(shape)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(
            f"{where}binary_data_size is {len(raw)} bytes but shape {shape} of {datatype} "
            f"needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


# No tensor a request can carry comes near these (the body limit is far
# smaller); numpy refuses shapes past its own limits with a ValueError, which
# must be the caller's 400, not the server's 500.
MAX_DIMENSIONS = 32
MAX_ELEMENTS = 2**31
SMALL = 64


def check_shape(shape: list[int], where: str) -> None:
    if len(shape) > MAX_DIMENSIONS:
        raise ProtocolError(
            f"{where}shape has {len(shape)} dimensions; at most {MAX_DIMENSIONS}")
    # Zero dimensions aside: numpy also refuses [2**62, 2**62, 0].
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise ProtocolError(
            f"{where}shape {shape} is too large: at most {MAX_ELEMENTS} elements")


def decode_tensor(item: Any, index: int, binary: memoryview | None = None,
                  offset: int = 0) -> tuple[Tensor, int]:
    """Decode ``inputs[index]``; return it and the offset past its binary data."""
    where = f"inputs[{index}]."
    if not isinstance(item, dict):
        raise ProtocolError(f"inputs[{index}] must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}name must be a non-empty string")
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(
            f"{where}datatype {datatype!r} is not one of {', '.join(DATATYPES)}"
        )
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(f"{where}shape must be a list of non-negative integers")
    check_shape(shape, where)
    params = _parameters(item.get("parameters"), where)
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(
                f"{where}parameters.binary_data_size must be a non-negative integer")
        if binary is None or offset + size > len(binary):
            raise ProtocolError(
                f"{where}parameters.binary_data_size points past the end of the binary data")
        if "data" in item:
            raise ProtocolError(f"{where}has both data and binary_data_size")
        array = binary_tensor(bytes(binary[offset : offset + size]), datatype, shape, where)
        return Tensor(name=name, datatype=datatype, shape=tuple(shape), data=array), offset + size
    if "data" not in item:
        raise ProtocolError(f"{where}data is missing")
    flat = _flatten(item["data"])
    expected = math.prod(shape)
    if len(flat) != expected:
        raise ProtocolError(
            f"{where}data has {len(flat)} elements but shape {shape} needs {expected}"
        )
    if datatype in ("FP64", "FP32"):
        # The common case, checked at numpy's speed: a list of numbers only
        # becomes a numeric array (a string, null, list or object among them
        # gives another kind, and the careful path below names the problem).
        array = np.array(flat)
        if array.dtype.kind in "fiub":
            if datatype == "FP32":
                with np.errstate(over="ignore"):
                    array = array.astype(np.float32)
                finite = bool(np.isfinite(array).all())
            else:
                if array.dtype != np.float64:
                    array = array.astype(np.float64)
                # A few numbers are checked faster one by one than by numpy.
                finite = (all(map(math.isfinite, flat)) if len(flat) <= SMALL
                          else bool(np.isfinite(array).all()))
            if not finite:
                raise ProtocolError(f"{where}data has values out of {datatype}'s range")
            return Tensor(name=name, datatype=datatype, shape=tuple(shape),
                          data=array.reshape(shape)), offset
    dtype = DATATYPES[datatype]
    try:
        if datatype == "BYTES":
            array = np.array([v if isinstance(v, str) else str(v) for v in flat], dtype=object)
        else:
            if any(isinstance(v, (str, list, dict)) or v is None for v in flat):
                raise ProtocolError(f"{where}data must hold {datatype} numbers only")
            with np.errstate(over="ignore"):
                array = np.asarray(flat, dtype=dtype)
            if datatype.startswith(("INT", "UINT")) and any(isinstance(v, float) for v in flat):
                raise ProtocolError(f"{where}data has fractional values for {datatype}")
            # JSON has no infinity: one here is a number too large for the type.
            if datatype.startswith("FP") and not np.isfinite(array).all():
                raise ProtocolError(f"{where}data has values out of {datatype}'s range")
    except (OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"{where}data does not fit {datatype}: {exc}") from None
    tensor = Tensor(name=name, datatype=datatype, shape=tuple(shape), data=array.reshape(shape))
    return tensor, offset


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """Separate the JSON header from the binary tail (``Inference-Header-Content-Length``)."""
    if header_length is None:
        return body, None
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ProtocolError(
            "Inference-Header-Content-Length must be a byte count within the body")
    cut = int(header_length)
    return body[:cut], memoryview(body)[cut:]


def decode_request(body: Any, binary: memoryview | None = None) -> InferenceRequest:
    if not isinstance(body, dict):
        raise ProtocolError("the request body must be a JSON object with an inputs list")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("id must be a string")
    parameters = _parameters(body.get("parameters"), "")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("inputs must be a non-empty list of tensors")
    decoded = []
    offset = 0
    for i, item in enumerate(inputs):
        tensor, offset = decode_tensor(item, i, binary, offset)
        decoded.append(tensor)
    if binary is not None and offset != len(binary):
        raise ProtocolError(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    tensors = tuple(decoded)
    binary_default = parameters.get("binary_data_output") is True
    binary_outputs: set[str] = set()
    requested: tuple[str, ...] | None = None
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise ProtocolError("outputs must be a list")
        names = []
        for i, out in enumerate(outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise ProtocolError(f"outputs[{i}].name must be a string")
            out_params = _parameters(out.get("parameters"), f"outputs[{i}].")
            if out_params.get("binary_data", binary_default) is True:
                binary_outputs.add(out["name"])
            names.append(out["name"])
        requested = tuple(names)
    return InferenceRequest(
        id=request_id, inputs=tensors, requested_outputs=requested, parameters=parameters,
        binary_outputs=frozenset(binary_outputs), binary_by_default=binary_default,
    )


def encode_binary(name: str, array: npt.NDArray[Any]) -> tuple[dict[str, Any], bytes]:
    """An output in the binary data extension: its JSON entry and its bytes."""
    datatype = datatype_of(array)
    if datatype == "BYTES":
        chunks = []
        for value in array.reshape(-1).tolist():
            raw = value if isinstance(value, bytes) else str(value).encode()
            chunks.append(struct.pack("<I", len(raw)) + raw)
        payload = b"".join(chunks)
    else:
        payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    entry = {"name": name, "datatype": datatype, "shape": list(array.shape),
             "parameters": {"binary_data_size": len(payload)}}
    return entry, payload


def encode_tensor(name: str, array: npt.NDArray[Any]) -> dict[str, Any]:
    datatype = datatype_of(array)
    if datatype == "BYTES":
        data: list[Any] = [v.decode(errors="replace") if isinstance(v, bytes) else str(v)
                           for v in array.reshape(-1).tolist()]
    else:
        data = array.reshape(-1).tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}
