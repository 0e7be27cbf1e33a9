"""The model's settings, written by the operator into the image as model.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True, slots=True)
class ModelSettings:
    name: str
    version: str
    runtime: str
    artifact: Path
    inputs: list[TensorSpec] | None
    outputs: list[TensorSpec] | None
    allow_unsafe_pickle: bool = False
    entrypoint: str | None = None

    @classmethod
    def load(cls, model_dir: Path) -> ModelSettings:
        body: dict[str, Any] = json.loads((model_dir / "model.json").read_text())

        def tensors(items: list[dict[str, Any]] | None) -> list[TensorSpec] | None:
            return [TensorSpec(**t) for t in items] if items else None

        return cls(
            name=body["name"],
            version=str(body["version"]),
            runtime=body["runtime"],
            artifact=model_dir / body["artifact"],
            inputs=tensors(body.get("inputs")),
            outputs=tensors(body.get("outputs")),
            allow_unsafe_pickle=body.get("allow_unsafe_pickle") is True,
            entrypoint=body.get("entrypoint"),
        )
