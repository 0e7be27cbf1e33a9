"""OIP gRPC messages to and from the data plane's tensors. Pure: no I/O.

Everything a caller can get wrong raises ``ProtocolError``, with the same
words as the JSON side where the mistake is the same (``protocol.py``); the
gRPC server answers it as INVALID_ARGUMENT.

A request's tensors come either in ``contents`` (the repeated field of
their datatype) or, all of them, in ``raw_input_contents`` (the binary
layout the HTTP side's binary data extension uses). The answer uses the
form the request used, so that a client reads it as it wrote it
(tritonclient sends and reads raw contents; generated clients often use
``contents``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ..protocol import (
    DATATYPES,
    InferenceRequest,
    ProtocolError,
    Tensor,
    binary_tensor,
    check_shape,
    datatype_of,
    encode_binary,
)
from . import messages as pb

# Each datatype's field of InferTensorContents (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


# Datatypes that share a wider field, whose values may not fit them.
NARROW = frozenset({"INT8", "INT16", "UINT8", "UINT16"})


def parameters_of(items: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, choice) if choice else None
    return out


def _from_contents(item: pb.ModelInferRequest.InferInputTensor, shape: list[int],
                   where: str) -> npt.NDArray[Any]:
    field = CONTENTS_FIELD.get(item.datatype)
    if field is None:
        raise ProtocolError(f"{where}datatype {item.datatype} travels in raw_input_contents "
                            "only (the protocol has no contents field for it)")
    values = getattr(item.contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise ProtocolError(
            f"{where}data has {len(values)} elements but shape {shape} needs {expected}")
    if item.datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    dtype = DATATYPES[item.datatype]
    try:
        array = np.array(values, dtype=dtype)
        # A type narrower than its field (INT8 in int_contents) must hold the values.
        if item.datatype in NARROW and not np.array_equal(array, np.asarray(values)):
            raise ValueError("values out of range")
    except (OverflowError, ValueError) as exc:
        raise ProtocolError(f"{where}data does not fit {item.datatype}: {exc}") from None
    return array.reshape(shape)


def decode_infer(message: pb.ModelInferRequest) -> InferenceRequest:
    """A ModelInferRequest as the data plane's request."""
    if not message.inputs:
        raise ProtocolError("inputs must be a non-empty list of tensors")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise ProtocolError(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs")
    tensors = []
    for index, item in enumerate(message.inputs):
        where = f"inputs[{index}]."
        if not item.name:
            raise ProtocolError(f"{where}name must be a non-empty string")
        if item.datatype not in DATATYPES:
            raise ProtocolError(
                f"{where}datatype {item.datatype!r} is not one of {', '.join(DATATYPES)}")
        shape = list(item.shape)
        if any(d < 0 for d in shape):
            raise ProtocolError(f"{where}shape must be a list of non-negative integers")
        check_shape(shape, where)
        if raw:
            if item.HasField("contents"):
                raise ProtocolError(f"{where}has contents, but the request's inputs travel "
                                    "in raw_input_contents")
            array = binary_tensor(raw[index], item.datatype, shape, where)
        else:
            array = _from_contents(item, shape, where)
        tensors.append(Tensor(name=item.name, datatype=item.datatype, shape=tuple(shape),
                              data=array))
    wanted = tuple(out.name for out in message.outputs) or None
    return InferenceRequest(id=message.id or None, inputs=tuple(tensors),
                            requested_outputs=wanted,
                            parameters=parameters_of(message.parameters))


def encode_infer(name: str, version: str, request_id: str | None,
                 results: Iterable[tuple[str, npt.NDArray[Any]]],
                 raw: bool) -> pb.ModelInferResponse:
    """The model's outputs as a ModelInferResponse: in raw_output_contents
    when ``raw``, else each in its datatype's contents field."""
    answer = pb.ModelInferResponse(model_name=name, model_version=version,
                                   id=request_id or "")
    for output_name, array in results:
        datatype = datatype_of(array)
        tensor = answer.outputs.add(name=output_name, datatype=datatype,
                                    shape=list(array.shape))
        if raw or datatype == "FP16":
            answer.raw_output_contents.append(encode_binary(output_name, array)[1])
            continue
        flat = array.reshape(-1)
        if datatype == "BYTES":
            values: list[Any] = [v if isinstance(v, bytes) else str(v).encode()
                                 for v in flat.tolist()]
        else:
            values = flat.tolist()
        getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values)
    return answer


def tensor_metadata(specs: Iterable[Mapping[str, Any]]
                    ) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(
        name=s["name"], datatype=s["datatype"], shape=list(s["shape"])) for s in specs]
