"""The python runtime: the user's own code behind the same contract.

The artifact is one module, ``model.py``. Either it defines ``predict(inputs)``
(and optionally ``load()``, called once before serving), or the manifest's
``spec.entrypoint`` names a class in it with ``load(self)`` (optional) and
``predict(self, inputs)``. ``inputs`` is a dict of input name to numpy array;
``predict`` returns an array (served as output ``predict``) or a dict of
output name to array.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import numpy.typing as npt

from .model import ModelLoadError, numeric_rows
from .protocol import ProtocolError, Tensor
from .settings import ModelSettings, TensorSpec


class PythonModel:
    platform = "python"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.impl: Any = None

    @property
    def ready(self) -> bool:
        return self.impl is not None

    def load(self) -> None:
        path = self.settings.artifact
        spec = importlib.util.spec_from_file_location("aiart_user_model", path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {path.name}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            entrypoint = self.settings.entrypoint
            if entrypoint:
                cls = getattr(module, entrypoint, None)
                if not isinstance(cls, type):
                    raise ModelLoadError(f"{path.name} has no class {entrypoint}")
                impl: Any = cls()
            else:
                impl = module
            if callable(getattr(impl, "load", None)):
                impl.load()
        except ModelLoadError:
            raise
        except Exception as exc:  # the user's code failed: say where
            raise ModelLoadError(
                f"{path.name} failed to load: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(impl, "predict", None)):
            where = f"class {self.settings.entrypoint}" if self.settings.entrypoint else path.name
            raise ModelLoadError(f"{where} has no predict(inputs)")
        self.impl = impl

    def input_specs(self) -> list[TensorSpec]:
        return self.settings.inputs or [TensorSpec("input-0", "FP64", [-1, -1])]

    def output_specs(self) -> list[TensorSpec]:
        return self.settings.outputs or [TensorSpec("predict", "FP64", [-1])]

    def output_names(self) -> list[str]:
        return [o.name for o in self.output_specs()]

    def _call(self, feed: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        try:
            result = self.impl.predict(feed)
        except ValueError as exc:  # the user's code refusing its input
            raise ProtocolError(f"the model refused the input: {exc}") from None
        if isinstance(result, dict):
            return {str(k): np.asarray(v) for k, v in result.items()}
        return {self.output_names()[0]: np.asarray(result)}

    def infer(
        self, inputs: tuple[Tensor, ...], wanted: tuple[str, ...] | None
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        results = self._call({t.name: t.data for t in inputs})
        names = list(wanted) if wanted is not None else list(results)
        for name in names:
            if name not in results:
                raise ProtocolError(
                    f"the model has no output {name!r}; it has {', '.join(results)}")
        return [(name, results[name]) for name in names]

    def predict_rows(self, rows: Any) -> npt.NDArray[Any]:
        matrix = numeric_rows(rows)
        name = self.input_specs()[0].name
        return next(iter(self._call({name: matrix}).values()))
