"""The runtime kinds: one table on the operator's side, one map of model
classes on the runtime's, and they agree."""

from __future__ import annotations

import importlib

import pytest
from aiart.build.kinds import KINDS, kind_of, numpy_major
from aiart.core.errors import PermanentError
from aiart.core.settings import OperatorSettings
from aiart.core.spec import Runtime, parse_manifest
from aiart_runtime.__main__ import IMPLEMENTATIONS


def test_every_kind_the_operator_builds_has_a_model_class_and_no_other() -> None:
    assert set(IMPLEMENTATIONS) == {kind.value for kind in KINDS}
    assert set(KINDS) == set(Runtime) - {Runtime.IMAGE}
    for name, implementation in IMPLEMENTATIONS.items():
        module, _, cls = implementation.partition(":")
        model_class = getattr(importlib.import_module(module), cls)
        for member in ("load", "infer", "input_specs", "output_specs", "output_names"):
            assert callable(getattr(model_class, member, None)), (name, member)


def manifest(runtime: str, extra: str = "") -> str:
    return ("apiVersion: aiart/v1\nkind: Model\nmetadata: {name: m, version: '1'}\n"
            f"spec:\n  runtime: {runtime}\n  artifact: {{uri: 'config://a'{extra}}}\n")


@pytest.mark.parametrize("runtime, artifact, file, problem", [
    ("onnx", b"\x80\x05not onnx at all", "model.onnx", "not an ONNX model"),
    ("python", b"def predict(:", "model.py", "not valid Python source"),
    ("h2o", b"not a zip", "model.zip", "not an H2O MOJO"),
    ("sklearn", b"plain text", "model.pkl", "artifact 'a'"),
])
def test_each_kind_names_its_file_and_refuses_an_artifact_of_another(
        runtime: str, artifact: bytes, file: str, problem: str) -> None:
    parsed = parse_manifest(manifest(runtime).encode())
    kind = kind_of(parsed)
    assert kind.artifact_file(parsed) == file
    with pytest.raises(PermanentError, match=problem):
        kind.serve_with(OperatorSettings(), parsed, artifact, "a")


def test_the_h2o_runtime_is_prebuilt_and_only_named() -> None:
    parsed = parse_manifest(manifest("h2o").encode())
    with pytest.raises(PermanentError, match="AIART_H2O_RUNTIME_IMAGE"):
        kind_of(parsed).serve_with(OperatorSettings(), parsed, b"PK\x03\x04rest", "a")
    assert kind_of(parsed).serve_with(OperatorSettings(h2o_runtime_image="h2o:1"), parsed,
                                      b"PK\x03\x04rest", "a") == "h2o:1"


def test_a_joblib_artifact_keeps_its_name_and_numpy_follows_scikit_learn() -> None:
    parsed = parse_manifest(manifest("sklearn", ", format: joblib").encode())
    assert kind_of(parsed).artifact_file(parsed) == "model.joblib"
    assert (numpy_major("1.4.1"), numpy_major("1.4.2"), numpy_major("1.9.1")) == (1, 2, 2)
