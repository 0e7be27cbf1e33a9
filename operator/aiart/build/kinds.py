"""One home per runtime kind: the file its artifact becomes in the image, how
an artifact of that kind is recognised before anything is built, and which
runtime image serves it. The operator (``control/reconcile``) and the
command line (``cli/main``) read this table; adding a runtime kind is a row
here and a model class in ``aiart_runtime`` (its ``IMPLEMENTATIONS``).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiart.build.pickle_facts import NotAPickle, read_pickle_facts
from aiart.build.recipes import RuntimeRecipe, onnx_runtime, python_runtime, sklearn_runtime
from aiart.core.errors import PermanentError
from aiart.core.settings import OperatorSettings
from aiart.core.spec import Manifest, Runtime


@dataclass(frozen=True, slots=True)
class Kind:
    runtime: Runtime
    # The artifact's file name in the model image (model.json names it).
    artifact_file: Callable[[Manifest], str]
    # The runtime that serves an artifact: a recipe to build, or a prebuilt
    # image's tag. Raises PermanentError, saying why, for an artifact that is
    # not of this kind.
    serve_with: Callable[[OperatorSettings, Manifest, bytes, str], RuntimeRecipe | str]
    # Whether ``aiart build-runtime --runtime NAME`` prebuilds it.
    prebuilt: bool = False


def _pickle_file(manifest: Manifest) -> str:
    fmt = manifest.spec.artifact.format if manifest.spec.artifact else "auto"
    return "model.joblib" if fmt == "joblib" else "model.pkl"


def numpy_major(sklearn: str) -> int:
    """The numpy a scikit-learn release needs: numpy 2 from 1.4.2 on."""
    parts = tuple(int(p) for p in sklearn.split(".")[:3] if p.isdigit())
    return 2 if parts >= (1, 4, 2) else 1


def _sklearn(settings: OperatorSettings, manifest: Manifest, artifact: bytes,
             name: str) -> RuntimeRecipe:
    try:
        facts = read_pickle_facts(artifact)
    except NotAPickle as exc:
        raise PermanentError(f"artifact {name!r}: {exc}") from None
    framework = manifest.spec.framework
    sklearn = framework.sklearn or facts.sklearn_version or settings.default_sklearn
    return sklearn_runtime(sklearn=sklearn,
                           numpy_major=framework.numpy or facts.numpy_major or numpy_major(sklearn),
                           base_image=settings.base_image, python_version=settings.python_version)


def looks_like_onnx(data: bytes) -> bool:
    # An ONNX file is a ModelProto whose first field is ir_version (field 1,
    # a varint: tag byte 0x08). Cheap, and enough to catch a wrong file (a
    # pickle starts with 0x80) before building anything.
    return len(data) > 16 and data[0] == 0x08


def _onnx(settings: OperatorSettings, manifest: Manifest, artifact: bytes,
          name: str) -> RuntimeRecipe:
    if not looks_like_onnx(artifact):
        raise PermanentError(
            f"artifact {name!r} is not an ONNX model (no ONNX protobuf header)")
    return onnx_runtime(base_image=settings.base_image, python_version=settings.python_version)


def _python(settings: OperatorSettings, manifest: Manifest, artifact: bytes,
            name: str) -> RuntimeRecipe:
    try:
        compile(artifact, "model.py", "exec")
    except (SyntaxError, ValueError) as exc:
        raise PermanentError(f"artifact {name!r} is not valid Python source: {exc}") from None
    return python_runtime(requirements=tuple(manifest.spec.requirements),
                          base_image=settings.base_image, python_version=settings.python_version)


def _h2o(settings: OperatorSettings, manifest: Manifest, artifact: bytes, name: str) -> str:
    if not artifact.startswith(b"PK\x03\x04"):
        raise PermanentError(
            f"artifact {name!r} is not an H2O MOJO (a zip file); export it with "
            "model.download_mojo()")
    if not settings.h2o_runtime_image:
        # H2O's jar is not on PyPI's path of an offline build: the runtime is
        # prebuilt where the jar is at hand, and the operator only names it.
        raise PermanentError(
            "the h2o runtime is not configured here: set AIART_H2O_RUNTIME_IMAGE "
            "(hack/images.sh build_h2o_runtime builds it)")
    return settings.h2o_runtime_image


KINDS: dict[Runtime, Kind] = {
    Runtime.SKLEARN: Kind(Runtime.SKLEARN, _pickle_file, _sklearn, prebuilt=True),
    Runtime.ONNX: Kind(Runtime.ONNX, lambda _: "model.onnx", _onnx, prebuilt=True),
    Runtime.PYTHON: Kind(Runtime.PYTHON, lambda _: "model.py", _python),
    Runtime.H2O: Kind(Runtime.H2O, lambda _: "model.zip", _h2o, prebuilt=True),
}


def kind_of(manifest: Manifest) -> Kind:
    """The kind of a manifest that names an artifact (every runtime but a
    ready image, which aiart neither builds nor serves)."""
    try:
        return KINDS[manifest.spec.runtime]
    except KeyError:
        raise PermanentError(f"runtime {manifest.spec.runtime.value!r} has no artifact to "
                             "build from") from None
