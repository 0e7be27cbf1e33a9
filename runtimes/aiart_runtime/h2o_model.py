"""The h2o runtime: an H2O MOJO scored by H2O's genmodel classes, in a JVM
inside this server (JPype). That bridge was measured against a JVM process
fed over a pipe (bench/h2o_bridge.sh): on one core it served 2.2x the calls
at a lower p50 and a far lower p99, and it keeps the one server, metrics and
contract of the other runtimes. No H2O cluster is involved.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from .model import ModelLoadError, select_outputs
from .protocol import ProtocolError, Tensor
from .settings import ModelSettings, ServerSettings, TensorSpec


class H2OModel:
    platform = "h2o_mojo"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.wrapper: Any = None
        self.features: list[str] = []
        self.categorical: list[bool] = []
        self.classes: list[str] | None = None
        self.category = ""

    @property
    def ready(self) -> bool:
        return self.wrapper is not None

    def load(self) -> None:
        import jpype

        jar = ServerSettings.from_env().genmodel_jar
        if not os.path.exists(jar):
            raise ModelLoadError(f"H2O's scoring classes are missing: no {jar}")
        if not jpype.isJVMStarted():
            jpype.startJVM(classpath=[jar], convertStrings=True)
        mojo_model = jpype.JClass("hex.genmodel.MojoModel")
        easy = jpype.JClass("hex.genmodel.easy.EasyPredictModelWrapper")
        try:
            model = mojo_model.load(str(self.settings.artifact))
        except Exception as exc:  # a Java exception: the file is not a usable MOJO
            raise ModelLoadError(f"cannot load {self.settings.artifact.name}: {exc}") from exc
        config = easy.Config().setModel(model).setConvertUnknownCategoricalLevelsToNa(True)
        self.wrapper = easy(config)
        names = [str(n) for n in model.getNames()]
        self.features = names[: int(model.nfeatures())]
        self.categorical = [model.getDomainValues(i) is not None
                            for i in range(len(self.features))]
        self.category = str(model.getModelCategory().toString())
        if self.category in ("Binomial", "Multinomial"):
            domain = model.getDomainValues(int(model.getResponseIdx()))
            self.classes = [str(c) for c in domain]
        elif self.category != "Regression":
            self.wrapper = None
            raise ModelLoadError(f"H2O models of category {self.category} are not served yet")

    def input_specs(self) -> list[TensorSpec]:
        if self.settings.inputs:
            return self.settings.inputs
        datatype = "BYTES" if any(self.categorical) else "FP64"
        return [TensorSpec("input-0", datatype, [-1, len(self.features)])]

    def output_specs(self) -> list[TensorSpec]:
        if self.classes is None:
            return [TensorSpec("predict", "FP64", [-1])]
        return [TensorSpec("predict", "BYTES", [-1]),
                TensorSpec("probabilities", "FP64", [-1, len(self.classes)])]

    def output_names(self) -> list[str]:
        return [o.name for o in self.output_specs()]

    def _rows(self, inputs: tuple[Tensor, ...]) -> list[list[Any]]:
        if len(inputs) > 1 or (inputs and inputs[0].name in self.features
                               and len(self.features) > 1):
            # One tensor per feature column, named after it.
            columns = {t.name: t.data.reshape(-1) for t in inputs}
            unknown = set(columns) - set(self.features)
            if unknown:
                raise ProtocolError(f"the model has no feature {sorted(unknown)[0]!r}")
            lengths = {len(c) for c in columns.values()}
            if len(lengths) != 1:
                raise ProtocolError("all feature columns must have the same length")
            n = lengths.pop()
            return [[columns[f][i] if f in columns else None for f in self.features]
                    for i in range(n)]
        data = inputs[0].data
        if data.ndim == 1:
            data = data.reshape(1, -1)
        if data.ndim != 2 or data.shape[1] != len(self.features):
            raise ProtocolError(
                f"input {inputs[0].name} has shape {list(inputs[0].shape)}; the model takes "
                f"[N, {len(self.features)}] ({', '.join(self.features)})")
        return data.tolist()  # type: ignore[no-any-return]

    def _score(self, rows: list[list[Any]]) -> dict[str, npt.NDArray[Any]]:
        import jpype

        row_data = jpype.JClass("hex.genmodel.easy.RowData")
        labels: list[Any] = []
        probabilities: list[list[float]] = []
        for row in rows:
            data = row_data()
            for name, is_cat, value in zip(self.features, self.categorical, row, strict=True):
                if value is None:
                    continue
                if is_cat:
                    data.put(name, value.decode() if isinstance(value, bytes) else str(value))
                else:
                    try:
                        data.put(name, jpype.JDouble(float(value)))
                    except (TypeError, ValueError):
                        raise ProtocolError(
                            f"feature {name} must be a number, got {value!r}") from None
            if self.category == "Regression":
                labels.append(float(self.wrapper.predictRegression(data).value))
            elif self.category == "Binomial":
                p = self.wrapper.predictBinomial(data)
                labels.append(str(p.label))
                probabilities.append(list(p.classProbabilities))
            else:
                p = self.wrapper.predictMultinomial(data)
                labels.append(str(p.label))
                probabilities.append(list(p.classProbabilities))
        if self.classes is None:
            return {"predict": np.asarray(labels, dtype=np.float64)}
        return {"predict": np.asarray(labels, dtype=object),
                "probabilities": np.asarray(probabilities, dtype=np.float64)}

    def infer(
        self, inputs: tuple[Tensor, ...], wanted: tuple[str, ...] | None
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        names = self.output_names()
        selected = select_outputs(names, wanted)
        results = self._score(self._rows(inputs))
        return [(name, results[name]) for name in selected]

    def predict_rows(self, rows: Any) -> npt.NDArray[Any]:
        if not isinstance(rows, list) or not rows:
            raise ProtocolError("instances must be a non-empty list of rows")
        if all(isinstance(r, dict) for r in rows):
            table = [[r.get(f) for f in self.features] for r in rows]
        elif all(isinstance(r, list) and len(r) == len(self.features) for r in rows):
            table = rows
        else:
            raise ProtocolError(
                f"each row must be a list of {len(self.features)} values or an object keyed by "
                f"feature name ({', '.join(self.features)})")
        return self._score(table)["predict"]
