"""What the server needs of a runtime: one small interface for every kind of model."""

from __future__ import annotations

from typing import Any, Protocol

import numpy.typing as npt

from .protocol import Tensor
from .settings import ModelSettings, TensorSpec


class ModelLoadError(RuntimeError):
    """The artifact cannot be loaded; the message says why."""


class ServedModel(Protocol):
    platform: str
    settings: ModelSettings

    @property
    def ready(self) -> bool: ...
    def load(self) -> None: ...
    def input_specs(self) -> list[TensorSpec]: ...
    def output_specs(self) -> list[TensorSpec]: ...
    def output_names(self) -> list[str]: ...

    def infer(
        self, inputs: tuple[Tensor, ...], wanted: tuple[str, ...] | None
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        """Outputs by name; ProtocolError when the inputs do not fit the model."""
        ...

    def predict_rows(self, rows: Any) -> npt.NDArray[Any]:
        """Predictions for plain JSON rows (the /predict convenience)."""
        ...
