"""Image recipes: what goes into runtime and model images, and their tags.

Pure apart from reading aiart's own runtime sources. Every tag is a hash of
what went into the image, so an image that exists is never built again and a
changed input always gives a new tag.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from aiart.core.images import model_repository

SERVER_REQUIREMENTS = (
    "starlette>=0.40,<2",
    "uvicorn>=0.30",
    "uvloop>=0.19",
    "httptools>=0.6",
    "orjson>=3.10",
    "prometheus-client>=0.20",
    # The Open Inference Protocol over gRPC (grpc_server.py); protobuf at
    # least the version its messages were generated with (oip/oip_pb2.py).
    "grpcio>=1.62",
    "protobuf>=6.33.5,<7",
    # Tracing, used only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    "opentelemetry-sdk>=1.30",
    "opentelemetry-exporter-otlp-proto-http>=1.30",
    # The payload log's writes to the model's bucket (payloads.py), and batch
    # jobs' reads and writes (batch.py).
    "minio>=7.2",
)
# What batch jobs need besides (Parquet): a layer of a job's own image on the
# model's, not in every serving image (pyarrow is 170 MB installed, and every
# runtime image is built, pushed and pulled). pyarrow 18 and later depend on
# nothing, so the layer cannot shadow the model's own numpy.
BATCH_REQUIREMENTS = ("pyarrow>=18",)


@cache
def runtime_source_dir() -> Path:
    """The aiart_runtime package's folder, found without importing it
    (the operator does not have the model server's dependencies)."""
    spec = importlib.util.find_spec("aiart_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the aiart_runtime package is not installed next to aiart")
    return Path(next(iter(spec.submodule_search_locations)))


def runtime_files() -> dict[str, bytes]:
    """Relative path -> content of every runtime source file, sorted."""
    root = runtime_source_dir()
    files = {}
    for path in sorted(root.rglob("*")):
        wanted = path.suffix in (".py", ".j2", ".typed")
        if path.is_file() and wanted and "__pycache__" not in path.parts:
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(runtime_source_dir() / "recipes"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


ONNXRUNTIME_VERSION = "1.32.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeRecipe:
    """A runtime image: the model server plus one runtime's libraries."""

    runtime: str
    libraries: tuple[str, ...]  # pip requirements that make this runtime
    label: str  # the readable part of the tag, e.g. "1.9.1-np2"
    base_image: str
    python_version: str
    # Further files for /opt/aiart/extra (e.g. H2O's scoring jar), by name.
    files: tuple[tuple[str, bytes], ...] = ()

    @property
    def requirements(self) -> tuple[str, ...]:
        return (*self.libraries, *SERVER_REQUIREMENTS)

    @property
    def recipe_hash(self) -> str:
        files = runtime_files()
        return _digest(
            self.runtime, self.base_image, self.python_version, *self.requirements,
            *(f"{k}\x00" for k in files), *files.values(),
            *(f"{name}\x00{hashlib.sha256(data).hexdigest()}" for name, data in self.files),
        )[:12]

    @property
    def tag(self) -> str:
        return f"aiart/runtime-{self.runtime}:{self.label}-{self.recipe_hash}"

    def dockerfile(self) -> str:
        def quote(req: str) -> str:
            return "'" + req.replace("'", "") + "'"

        return _environment().get_template("runtime.Dockerfile.j2").render(
            runtime=self.runtime,
            recipe_hash=self.recipe_hash,
            base_image=self.base_image,
            python_version=self.python_version,
            requirements=" ".join(quote(r) for r in self.requirements),
            libraries=" ".join(r.replace('"', "").replace("\\", "") for r in self.libraries),
            extra_files=bool(self.files),
        )


def sklearn_runtime(
    *, sklearn: str, numpy_major: int, base_image: str, python_version: str
) -> RuntimeRecipe:
    numpy = "numpy>=2,<3" if numpy_major == 2 else "numpy>=1.21,<2"
    return RuntimeRecipe(
        runtime="sklearn", libraries=(f"scikit-learn=={sklearn}", numpy, "joblib"),
        label=f"{sklearn}-np{numpy_major}", base_image=base_image, python_version=python_version,
    )


def python_runtime(
    *, requirements: tuple[str, ...], base_image: str, python_version: str
) -> RuntimeRecipe:
    """User code's runtime: one image per requirement set, shared by every
    model that pins the same set."""
    digest = _digest(*sorted(requirements))[:10]
    return RuntimeRecipe(
        runtime="python", libraries=("numpy>=1.26", *sorted(requirements)),
        label=f"req-{digest}", base_image=base_image, python_version=python_version,
    )


H2O_VERSION = "3.46.0.9"
JPYPE_VERSION = "1.7.1"


def h2o_runtime(*, genmodel_jar: bytes, base_image: str, python_version: str) -> RuntimeRecipe:
    """H2O MOJOs scored by H2O's genmodel classes in a JVM inside the server
    (JPype): measured faster than a JVM process over a pipe (bench/h2o_bridge.sh)."""
    return RuntimeRecipe(
        runtime="h2o", libraries=(f"JPype1=={JPYPE_VERSION}", "numpy>=1.26"),
        label=H2O_VERSION, base_image=base_image, python_version=python_version,
        files=(("h2o-genmodel.jar", genmodel_jar),),
    )


def onnx_runtime(
    *, onnxruntime: str = ONNXRUNTIME_VERSION, base_image: str, python_version: str
) -> RuntimeRecipe:
    return RuntimeRecipe(
        runtime="onnx", libraries=(f"onnxruntime=={onnxruntime}", "numpy>=1.26"),
        label=onnxruntime, base_image=base_image, python_version=python_version,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecipe:
    name: str
    version: str
    runtime_image: str
    artifact_name: str
    artifact: bytes
    settings_json: bytes
    registry: str

    def dockerfile(self) -> str:
        return _environment().get_template("model.Dockerfile.j2").render(
            name=self.name, version=self.version, runtime_image=self.runtime_image
        )

    @property
    def tag(self) -> str:
        digest = _digest(
            self.runtime_image, self.dockerfile(), self.artifact_name,
            hashlib.sha256(self.artifact).hexdigest(), self.settings_json,
        )[:16]
        return f"{self.registry}/{model_repository(self.name)}:{self.version}-{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRecipe:
    """A batch job's image: the model's image and BATCH_REQUIREMENTS beside
    its own libraries (/opt/aiart-batch, on the path after them)."""

    model_image: str  # the model's image by tag (registry/aiart/<name>:<version>-<hash>)
    python_version: str

    def dockerfile(self) -> str:
        return _environment().get_template("batch.Dockerfile.j2").render(
            model_image=self.model_image,
            requirements=" ".join(f"'{r}'" for r in BATCH_REQUIREMENTS))

    @property
    def tag(self) -> str:
        digest = _digest(self.model_image, self.python_version, self.dockerfile())[:8]
        return f"{self.model_image}-batch-{digest}"
