"""What the server needs of a runtime: one small interface for every kind of model."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .protocol import ProtocolError, Tensor
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


def select_outputs(names: list[str], wanted: tuple[str, ...] | None) -> list[str]:
    """The outputs a request asked for (all when it named none); 400 for unknown ones."""
    selected = list(wanted) if wanted is not None else names
    for name in selected:
        if name not in names:
            raise ProtocolError(f"the model has no output {name!r}; it has {', '.join(names)}")
    return selected


def numeric_rows(rows: Any) -> npt.NDArray[Any]:
    """Plain JSON rows (lists of numbers) as a float matrix; 400 for anything else."""
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise ProtocolError("instances must be a non-empty list of rows (lists)")
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"rows must hold numbers of equal length: {exc}") from None
    if matrix.ndim != 2:
        raise ProtocolError("rows must all have the same length")
    return matrix
