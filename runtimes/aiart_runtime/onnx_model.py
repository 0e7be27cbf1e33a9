"""The ONNX runtime: an .onnx file served with onnxruntime.

Tensor names, datatypes and shapes in the metadata come from the model
itself. Outputs that are not tensors (skl2onnx's ZipMap of probabilities,
for one) cannot be expressed in the protocol and are left out; convert
classifiers with ``options={"zipmap": False}`` to serve probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .model import ModelLoadError, numeric_rows, select_outputs
from .protocol import DATATYPES, ProtocolError, Tensor
from .settings import ModelSettings, TensorSpec

ONNX_TYPES = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
    "tensor(int64)": "INT64", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _shape(shape: list[Any]) -> list[int]:
    # Symbolic or unknown dimensions ("N", None) mean "any size".
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


class OnnxModel:
    platform = "onnxruntime_onnx"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.session: Any = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._by_name: dict[str, TensorSpec] = {}

    @property
    def ready(self) -> bool:
        return self.session is not None

    def load(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One model per container, one request at a time on the event loop:
        # a single intra-op thread avoids oversubscribing small replicas.
        options.intra_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.settings.artifact), sess_options=options,
                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"cannot load {self.settings.artifact.name}: {exc}") from exc
        self._inputs = [TensorSpec(i.name, ONNX_TYPES[i.type], _shape(i.shape))
                        for i in self.session.get_inputs() if i.type in ONNX_TYPES]
        self._outputs = [TensorSpec(o.name, ONNX_TYPES[o.type], _shape(o.shape))
                         for o in self.session.get_outputs() if o.type in ONNX_TYPES]
        self._by_name = {s.name: s for s in self._inputs}
        if len(self._inputs) != len(self.session.get_inputs()):
            raise ModelLoadError("the model has inputs that are not tensors")
        if not self._outputs:
            raise ModelLoadError("the model has no tensor outputs")

    def input_specs(self) -> list[TensorSpec]:
        return self._inputs

    def output_specs(self) -> list[TensorSpec]:
        return self._outputs

    def output_names(self) -> list[str]:
        return [o.name for o in self._outputs]

    def _feed(self, inputs: tuple[Tensor, ...]) -> dict[str, npt.NDArray[Any]]:
        specs = self._by_name
        if len(inputs) == 1 and len(specs) == 1:
            # One input: any name will do, as for the other runtimes.
            pairs = [(self._inputs[0], inputs[0])]
        else:
            unknown = [t.name for t in inputs if t.name not in specs]
            if unknown:
                raise ProtocolError(
                    f"the model has no input {unknown[0]!r}; it has {', '.join(specs)}")
            missing = set(specs) - {t.name for t in inputs}
            if missing:
                raise ProtocolError(f"input {sorted(missing)[0]!r} is missing")
            pairs = [(specs[t.name], t) for t in inputs]
        feed = {}
        for spec, tensor in pairs:
            shape = tensor.data.shape
            if len(spec.shape) != len(shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
            ):
                raise ProtocolError(
                    f"input {tensor.name} has shape {list(tensor.shape)}; the model takes "
                    f"{spec.shape} (-1: any size)")
            if (spec.datatype == "BYTES") != (tensor.datatype == "BYTES"):
                raise ProtocolError(
                    f"input {tensor.name} is {tensor.datatype}; the model takes {spec.datatype}")
            # Numbers are converted to the model's own type (FP64 rows for an
            # FP32 model are the common case); precision is the caller's call.
            dtype = DATATYPES[spec.datatype]
            feed[spec.name] = tensor.data.astype(dtype if dtype is not np.object_ else str,
                                                 copy=False)
        return feed

    def infer(
        self, inputs: tuple[Tensor, ...], wanted: tuple[str, ...] | None
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        names = self.output_names()
        selected = select_outputs(names, wanted)
        try:
            results = self.session.run(selected, self._feed(inputs))
        except ProtocolError:
            raise
        except Exception as exc:  # onnxruntime's errors on bad values are the caller's
            raise ProtocolError(f"the model rejected the input: {exc}") from None
        return [(name, np.asarray(value)) for name, value in zip(selected, results, strict=True)]

    def predict_rows(self, rows: Any) -> npt.NDArray[Any]:
        if len(self._inputs) != 1:
            raise ProtocolError("/predict needs a model with exactly one input")
        matrix = numeric_rows(rows)
        spec = self._inputs[0]
        tensor = Tensor(name=spec.name, datatype="FP64", shape=matrix.shape, data=matrix)
        first = self.output_names()[0]
        return self.infer((tensor,), (first,))[0][1]
