"""The scikit-learn runtime: a pickle or joblib estimator behind the protocol."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .model import ModelLoadError, numeric_rows, select_outputs
from .protocol import ProtocolError, Tensor, datatype_of
from .settings import ModelSettings, TensorSpec


@contextlib.contextmanager
def missing_values_refused(matrix: npt.NDArray[Any]) -> Iterator[None]:
    """A ValueError from an estimator given NaN or infinity (JSON's null
    among them) is the request's fault, a 400, not the model's: many
    estimators refuse missing values, and which do is not reliably known
    beforehand (a pipeline's tags say no even when an imputer leads it)."""
    try:
        yield
    except ValueError as exc:
        if matrix.dtype.kind == "f" and not np.isfinite(matrix).all():
            raise ProtocolError(f"the model does not take these values (null, NaN or "
                                f"infinity among them): {exc}") from exc
        raise


class SklearnModel:
    platform = "sklearn"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.estimator: Any = None
        self.n_features: int | None = None
        self.feature_names: list[str] | None = None
        self.has_proba = False
        self._output_names: list[str] | None = None

    @property
    def ready(self) -> bool:
        return self.estimator is not None

    def infer(
        self, inputs: tuple[Tensor, ...], wanted: tuple[str, ...] | None
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        return self.predict(self.features(inputs), wanted)

    def predict_rows(self, rows: Any) -> npt.NDArray[Any]:
        matrix = self.rows_to_matrix(rows)
        with missing_values_refused(matrix):
            return np.asarray(self.estimator.predict(matrix))

    def load(self) -> None:
        import joblib  # joblib.load also reads plain pickles

        from .safe_pickle import UnsafePickleError, restricted_joblib

        guard = contextlib.nullcontext() if self.settings.allow_unsafe_pickle else (
            restricted_joblib())
        try:
            with guard:
                self.estimator = joblib.load(self.settings.artifact)
        except UnsafePickleError as exc:
            raise ModelLoadError(f"refused to load {self.settings.artifact.name}: {exc}") from exc
        except Exception as exc:  # any failure here is the artifact's, reported whole
            raise ModelLoadError(
                f"cannot load {self.settings.artifact.name}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(getattr(self.estimator, "predict", None)):
            raise ModelLoadError(
                f"{self.settings.artifact.name} holds a {type(self.estimator).__name__}, "
                "which has no predict method"
            )
        n = getattr(self.estimator, "n_features_in_", None)
        self.n_features = int(n) if n is not None else None
        names = getattr(self.estimator, "feature_names_in_", None)
        self.feature_names = [str(x) for x in names] if names is not None else None
        self.has_proba = callable(getattr(self.estimator, "predict_proba", None))

    # -- metadata ---------------------------------------------------------

    def input_specs(self) -> list[TensorSpec]:
        if self.settings.inputs:
            return self.settings.inputs
        return [TensorSpec("input-0", "FP64", [-1, self.n_features or -1])]

    def output_specs(self) -> list[TensorSpec]:
        if self.settings.outputs:
            return self.settings.outputs
        classes = getattr(self.estimator, "classes_", None)
        if classes is not None:
            dtype = datatype_of(np.asarray(classes))
        else:
            dtype = "FP64"
        specs = [TensorSpec("predict", dtype, [-1])]
        if self.has_proba:
            n_classes = len(classes) if classes is not None else -1
            specs.append(TensorSpec("predict_proba", "FP64", [-1, n_classes]))
        return specs

    def output_names(self) -> list[str]:
        # Fixed once loaded; asked for on every request.
        if self._output_names is None:
            self._output_names = [s.name for s in self.output_specs()]
        return self._output_names

    # -- inference --------------------------------------------------------

    def features(self, inputs: tuple[Tensor, ...]) -> npt.NDArray[Any]:
        arrays = []
        for tensor in inputs:
            if tensor.datatype == "BYTES":
                raise ProtocolError(f"input {tensor.name}: BYTES is not a numeric tensor")
            data = tensor.data
            if data.ndim == 1:
                data = data.reshape(-1, 1) if len(inputs) > 1 else data.reshape(1, -1)
            if data.ndim != 2:
                raise ProtocolError(
                    f"input {tensor.name} has shape {list(tensor.shape)}; "
                    "expected [N, n_features]"
                )
            arrays.append(data)
        rows = {a.shape[0] for a in arrays}
        if len(rows) != 1:
            raise ProtocolError("all inputs must have the same number of rows")
        matrix = arrays[0] if len(arrays) == 1 else np.hstack(arrays)
        if matrix.shape[0] == 0:
            raise ProtocolError("the request has no rows to predict")
        if self.n_features is not None and matrix.shape[1] != self.n_features:
            raise ProtocolError(
                f"the model takes {self.n_features} features per row, got {matrix.shape[1]}"
            )
        return matrix

    def predict(
        self, matrix: npt.NDArray[Any], wanted: tuple[str, ...] | None
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        names = self.output_names()
        selected = select_outputs(names, wanted)
        results: list[tuple[str, npt.NDArray[Any]]] = []
        # Only the configured first two outputs map to predict / predict_proba.
        with missing_values_refused(matrix):
            for index, name in enumerate(names):
                if name not in selected:
                    continue
                if index == 0:
                    results.append((name, np.asarray(self.estimator.predict(matrix)).reshape(-1)))
                elif index == 1 and self.has_proba:
                    results.append((name, np.asarray(self.estimator.predict_proba(matrix))))
        return results

    def rows_to_matrix(self, rows: Any) -> npt.NDArray[Any]:
        """Plain JSON rows (lists, or objects keyed by feature name) to a matrix."""
        if not isinstance(rows, list) or not rows:
            raise ProtocolError("instances must be a non-empty list of rows")
        if all(isinstance(r, dict) for r in rows):
            if self.feature_names is None:
                raise ProtocolError(
                    "this model was trained without feature names; send rows as lists"
                )
            try:
                rows = [[r[f] for f in self.feature_names] for r in rows]
            except KeyError as exc:
                raise ProtocolError(f"a row lacks feature {exc.args[0]!r}") from None
        matrix = numeric_rows(rows)
        if self.n_features is not None and matrix.shape[1] != self.n_features:
            raise ProtocolError(
                f"the model takes {self.n_features} features per row, got {matrix.shape[1]}"
            )
        return matrix
