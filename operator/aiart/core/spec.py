"""The v1 manifest: parsing and validation into a typed, frozen ``ModelSpec``.

Pure: no I/O. Every problem in a manifest is reported at once, each with the
path of the field it concerns, so that a user fixes them all in one go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aiart.core.store_layout import ArtifactRef, BadURI, parse_artifact_uri

API_VERSION = "aiart/v1"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Service names are "aiart-<name>-<version>" and must fit Docker's 63 characters.
SERVICE_PREFIX = "aiart-"
MAX_SERVICE_NAME = 63
MAX_MANIFEST_BYTES = 64 * 1024
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
SKLEARN_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?([.-]?(post|rc|dev)\d*)?$")
# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def image_repository(image: str) -> str:
    """An image reference without its tag and digest: ``host:5000/team/m:1``
    -> ``host:5000/team/m`` (a registry's port is not a tag)."""
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return repository


# A pinned requirement: name[extras]==version, nothing else (no URLs, no pip
# options): requirements end up in an image build.
PINNED_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?"
    r"==[A-Za-z0-9]([A-Za-z0-9.!+_-]*[A-Za-z0-9])?$"
)
PYTHON_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_MEMORY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class Runtime(StrEnum):
    SKLEARN = "sklearn"
    ONNX = "onnx"
    PYTHON = "python"
    H2O = "h2o"
    IMAGE = "image"


class AuthMode(StrEnum):
    NONE = "none"  # public: anyone who reaches the gateway
    APIKEY = "apikey"  # an aiart API key that covers the model (the default)
    OIDC = "oidc"  # a JWT from the configured OIDC issuer, with the required scopes


class Datatype(StrEnum):
    """Open Inference Protocol tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _dns_label(value: str, what: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} must be a DNS label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class Metadata(_Strict):
    name: str
    version: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "name")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        # YAML reads `version: 1` as an int; a version is a name, so accept
        # plain integers but keep them as text.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            _dns_label(value, "version")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not LABEL_KEY.match(key) or len(key) > 63:
                raise ValueError(f"label key {key!r} must be letters, digits, '-', '_' or '.'")
            if key.startswith("aiart."):
                raise ValueError(f"label key {key!r}: the aiart. prefix is reserved")
        return value

    @model_validator(mode="after")
    def _fits_service_name(self) -> Metadata:
        length = len(SERVICE_PREFIX) + len(self.name) + 1 + len(self.version)
        if length > MAX_SERVICE_NAME:
            raise ValueError(
                f"name and version are too long together: service name "
                f"'{SERVICE_PREFIX}{self.name}-{self.version}' would have {length} characters, "
                f"at most {MAX_SERVICE_NAME} are allowed"
            )
        return self


class Artifact(_Strict):
    uri: str
    sha256: str | None = None
    format: Literal["pickle", "joblib", "auto"] = "auto"
    # Pickles load through an allow-list unless the user vouches for the file.
    allowUnsafePickle: bool = False

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        try:
            parse_artifact_uri(value)
        except BadURI as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("sha256 must be 64 lower-case hexadecimal digits")
        return value

    @property
    def ref(self) -> ArtifactRef:
        return parse_artifact_uri(self.uri)


class Framework(_Strict):
    """Library versions the artifact needs; detected from a pickle when absent."""

    sklearn: str | None = None
    numpy: Literal[1, 2] | None = None

    @field_validator("sklearn", mode="before")
    @classmethod
    def _sklearn(cls, value: object) -> object:
        if isinstance(value, float):
            value = str(value)
        if isinstance(value, str) and not SKLEARN_VERSION.match(value):
            raise ValueError(f"{value!r} is not a scikit-learn version such as 1.5.2")
        return value


class Tensor(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-:/]+$")
    datatype: Datatype = Field(strict=False)
    shape: list[Annotated[int, Field(ge=-1)]]


class Resources(_Strict):
    cpus: float | None = Field(default=None, gt=0, le=1024)
    memory: str | None = None

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number of CPUs such as 0.5") from None
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not MEMORY.match(value):
            raise ValueError(f"{value!r} is not a memory size such as 512Mi or 1G")
        return value

    @property
    def memory_bytes(self) -> int | None:
        if self.memory is None:
            return None
        match = MEMORY.match(self.memory)
        assert match is not None
        return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


class ResourceSpec(_Strict):
    limits: Resources = Field(default_factory=Resources)
    reservations: Resources = Field(default_factory=Resources)


class Auth(_Strict):
    # Closed unless the manifest opens it: a model is public only by choice.
    mode: AuthMode = Field(default=AuthMode.APIKEY, strict=False)
    # oidc: scopes the caller's token must carry (all of them).
    scopes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}$")]] = Field(
        default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _scopes_need_oidc(self) -> Auth:
        if self.scopes and self.mode is not AuthMode.OIDC:
            raise ValueError("auth.scopes is only for mode oidc")
        return self


class RateLimit(_Strict):
    """Traefik's rate limiter: ``average`` requests per second, bursts of ``burst``."""

    average: int = Field(ge=1, le=1_000_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)


class Store(_Strict):
    """The model's bucket in the object store (see docs/storage.md)."""

    # Give the model's containers the store's endpoint and keys of their own
    # (as Docker secrets), to read inputs or write results under predictions/.
    credentials: bool = False
    # Delete the bucket, and everything in it, when the model's last version
    # is removed. By default the bucket, and so every run and result, is kept.
    deleteWithModel: bool = False


class PayloadLogging(_Strict):
    """A sample of requests and their answers, written by the model's servers
    to its bucket under payloads/ (docs/storage.md)."""

    # The share of inference requests logged, from 0 (exclusive) to 1: all.
    sample: float = Field(default=1.0, gt=0, le=1)
    # Where: the model's bucket (the only place for now).
    to: Literal["bucket"] = "bucket"

    @field_validator("sample", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class StreamFormat(StrEnum):
    OIP = "oip"  # each message is an Open Inference Protocol request, as is
    ROW = "row"  # each message is one row: a JSON object (by columns) or array


# Where a stream's answers and refusals go, by default; {model}, {stream}
# and {topic} (the input message's topic) are filled in per message.
RESULT_TOPIC = "aiart/results/{model}/{topic}"
DEAD_LETTER_TOPIC = "aiart/dead-letter/{model}/{topic}"
_TOPIC_FIELDS = re.compile(r"\{(model|stream|topic)\}")
MAX_TOPIC_CHARS = 256


def _topic_filter(value: str) -> str:
    """An MQTT subscription filter: levels split by '/', '+' a whole level,
    '#' a whole last level; not a broker's own $ topics."""
    if not value or len(value) > MAX_TOPIC_CHARS or "\x00" in value:
        raise ValueError(f"topic filter {value!r} must be 1 to {MAX_TOPIC_CHARS} characters, "
                         "no NUL")
    if value.startswith("$"):
        raise ValueError(f"topic filter {value!r}: $ topics are the broker's own")
    levels = value.split("/")
    for index, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and level != "#"):
            raise ValueError(f"topic filter {value!r}: + and # stand for a whole level")
        if level == "#" and index != len(levels) - 1:
            raise ValueError(f"topic filter {value!r}: # may only be the last level")
    return value


def _topic_template(value: str, what: str) -> str:
    plain = _TOPIC_FIELDS.sub("x", value)
    if not value or len(value) > MAX_TOPIC_CHARS or "\x00" in value:
        raise ValueError(f"{what} {value!r} must be 1 to {MAX_TOPIC_CHARS} characters, no NUL")
    if "+" in plain or "#" in plain or "{" in plain or "}" in plain:
        raise ValueError(f"{what} {value!r}: a topic to publish to has no wildcard; "
                         "{model}, {stream} and {topic} are filled in")
    if plain.startswith("$"):
        raise ValueError(f"{what} {value!r}: $ topics are the broker's own")
    return value


class Stream(_Strict):
    """A model fed from MQTT topics: each message scored, its answer
    published (docs/streams.md)."""

    name: str = Field(max_length=20)
    # What to read: MQTT filters, with + and # wildcards.
    topics: list[str] = Field(min_length=1, max_length=20)
    format: StreamFormat = Field(default=StreamFormat.OIP, strict=False)
    # format row: the order of a JSON object's fields in the row (an array
    # message is taken in its own order).
    columns: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=4096)
    # format row: the name of the input tensor the row fills.
    input: str = Field(default="input-0", min_length=1, max_length=128,
                       pattern=r"^[A-Za-z0-9_.\-:/]+$")
    # Where answers go, and messages that cannot be scored (with the reason).
    output: str = RESULT_TOPIC
    deadLetter: str = DEAD_LETTER_TOPIC
    # Messages scored at once; answers are published in the order the
    # messages came, whatever order they are scored in.
    concurrency: int = Field(default=8, ge=1, le=64)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value, "stream name")

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        return [_topic_filter(topic) for topic in value]

    @field_validator("output", "deadLetter")
    @classmethod
    def _publish_to(cls, value: str, info: ValidationInfo) -> str:
        return _topic_template(value, str(info.field_name))

    @model_validator(mode="after")
    def _no_loop(self) -> Stream:
        if self.columns is not None and self.format is not StreamFormat.ROW:
            raise ValueError("columns are for format row")
        if len(set(self.topics)) != len(self.topics):
            raise ValueError("topics are listed twice")
        return self


class Batching(_Strict):
    """Adaptive batching of concurrent requests to one replica (docs/runtimes.md)."""

    # At most this many rows in one call of the model.
    maxBatchSize: int = Field(ge=2, le=4096)
    # At most this long a request waits for others to join its batch; a lone
    # request never waits.
    maxLatencyMs: float = Field(gt=0, le=1000)


class Objectives(_Strict):
    """Service objectives the shipped alert rules hold the model to (docs/observability.md)."""

    # The 99th percentile of inference latency, in milliseconds, over 5 minutes.
    latencyP99Ms: float | None = Field(default=None, gt=0, le=3_600_000)


class RolloutStrategy(StrEnum):
    CANARY = "canary"  # a rising share of the model's traffic, judged at each step
    SHADOW = "shadow"  # a mirrored copy of live requests; callers see only the current answers


DURATION = re.compile(r"^(\d+)(s|m|h)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
DEFAULT_STEPS = (10, 25, 50, 100)


class Gate(_Strict):
    """What the new version must hold to over each step of a canary, read from
    Prometheus (the ``aiart_*`` series its servers export)."""

    # Server errors (5xx) among its requests over the step.
    maxErrorRate: float = Field(default=0.01, ge=0, le=1)
    # The 99th percentile of its servers' latency over the step, in milliseconds.
    maxP99Ms: float = Field(default=500, gt=0, le=3_600_000)
    # Fewer requests than this over a step judge nothing: the step is held
    # until they have come (a version nobody called is not promoted).
    minRequests: int = Field(default=1, ge=0, le=1_000_000)

    @field_validator("maxErrorRate", "maxP99Ms", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Rollout(_Strict):
    """How a new version takes over from the current one (docs/rollouts.md)."""

    strategy: RolloutStrategy = Field(strict=False)
    # canary: the new version's percent of the model's traffic at each step,
    # rising, the last one 100 (then it is promoted).
    steps: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(
        default=None, min_length=1, max_length=20)
    # How long each canary step lasts before its gate is read: 30s, 5m, 1h.
    interval: str = "60s"
    gate: Gate = Field(default_factory=Gate)
    # shadow: the percent of live requests mirrored to the new version.
    percent: int | None = Field(default=None, ge=1, le=100)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return _duration(value, "interval", 5, 86_400)

    @model_validator(mode="after")
    def _strategy_fields(self) -> Rollout:
        if self.strategy is RolloutStrategy.CANARY:
            if self.percent is not None:
                raise ValueError("percent is for strategy shadow; a canary has steps")
            steps = self.steps or []
            if any(b <= a for a, b in pairwise(steps)):
                raise ValueError(f"steps {steps} must rise from step to step")
            if steps and steps[-1] != 100:
                raise ValueError(f"steps {steps} must end at 100")
        elif self.steps is not None:
            raise ValueError("steps is for strategy canary; a shadow has a percent")
        return self

    @property
    def step_weights(self) -> tuple[int, ...]:
        return tuple(self.steps) if self.steps else DEFAULT_STEPS

    @property
    def mirror_percent(self) -> int:
        return self.percent if self.percent is not None else 100

    @property
    def interval_seconds(self) -> int:
        return duration_seconds(self.interval)


def duration_seconds(value: str) -> int:
    """Seconds in a duration such as 30s, 5m or 1h (already validated)."""
    match = DURATION.match(value)
    assert match is not None
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _say(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duration(value: str, what: str, low: int, high: int) -> str:
    match = DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    if not low <= duration_seconds(value) <= high:
        raise ValueError(f"{what} {value} must be between {_say(low)} and {_say(high)}")
    return value


class ScaleMetric(StrEnum):
    CONCURRENCY = "concurrency"  # requests in flight at once, per replica
    RPS = "rps"  # requests per second, per replica


class Scaling(_Strict):
    """How many replicas serve a version, decided from its load
    (docs/scaling.md). The defaults are Knative's KPA's, except the target:
    a model server works on a few requests at a time, not a hundred."""

    minReplicas: int = Field(default=1, ge=0, le=100)
    maxReplicas: int = Field(default=10, ge=1, le=100)
    metric: ScaleMetric = Field(default=ScaleMetric.CONCURRENCY, strict=False)
    # Per replica: concurrent requests (metric concurrency) or requests per second.
    target: float = Field(default=4.0, gt=0, le=100_000)
    # The load is averaged over this window to size the service...
    stableWindow: str = "60s"
    # ...and over this one to notice a burst: when it asks for twice the
    # replicas that are ready (panicThreshold), the service grows at once and
    # does not shrink until the stable window has been calm.
    panicWindow: str = "6s"
    panicThreshold: float = Field(default=2.0, ge=1.1, le=10)
    # minReplicas 0: no request for this long, and the version goes to zero.
    scaleToZeroAfter: str = "30s"
    # How long a request for a version at zero is held while it wakes; then
    # the caller gets 503 with Retry-After.
    activationTimeout: str = "30s"

    @field_validator("target", "panicThreshold", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("stableWindow")
    @classmethod
    def _stable(cls, value: str) -> str:
        return _duration(value, "stableWindow", 6, 3600)

    @field_validator("panicWindow")
    @classmethod
    def _panic(cls, value: str) -> str:
        # Prometheus reads the gateway every 2 s: fewer than two readings in
        # the window give no rate at all.
        return _duration(value, "panicWindow", 4, 600)

    @field_validator("scaleToZeroAfter")
    @classmethod
    def _idle(cls, value: str) -> str:
        return _duration(value, "scaleToZeroAfter", 5, 86_400)

    @field_validator("activationTimeout")
    @classmethod
    def _activation(cls, value: str) -> str:
        return _duration(value, "activationTimeout", 2, 600)

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.maxReplicas < self.minReplicas:
            raise ValueError(f"maxReplicas {self.maxReplicas} is below minReplicas "
                             f"{self.minReplicas}")
        if duration_seconds(self.panicWindow) > duration_seconds(self.stableWindow):
            raise ValueError(f"panicWindow {self.panicWindow} is longer than stableWindow "
                             f"{self.stableWindow}")
        return self

    @property
    def stable_seconds(self) -> int:
        return duration_seconds(self.stableWindow)

    @property
    def panic_seconds(self) -> int:
        return duration_seconds(self.panicWindow)

    @property
    def idle_seconds(self) -> int:
        return duration_seconds(self.scaleToZeroAfter)

    @property
    def activation_seconds(self) -> int:
        return duration_seconds(self.activationTimeout)

    @property
    def first_replicas(self) -> int:
        """A new version starts with at least one replica: it must answer
        once to become Ready, even if it may sleep later."""
        return max(self.minReplicas, 1)


class Spec(_Strict):
    runtime: Runtime = Field(strict=False)
    artifact: Artifact | None = None
    # runtime: image only: the ready image to deploy, and the port it serves on.
    image: str | None = Field(default=None, max_length=512)
    port: int = Field(default=8080, ge=1, le=65535)
    # runtime: python only: pinned requirements, and the class to serve (the
    # module's own load()/predict() when absent).
    requirements: list[str] = Field(default_factory=list, max_length=100)
    entrypoint: str | None = None
    framework: Framework = Field(default_factory=Framework)
    replicas: int = Field(default=1, ge=0, le=100)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    env: dict[str, str] = Field(default_factory=dict)
    inputs: list[Tensor] | None = None
    outputs: list[Tensor] | None = None
    auth: Auth = Field(default_factory=Auth)
    rateLimit: RateLimit | None = None
    store: Store = Field(default_factory=Store)
    objectives: Objectives = Field(default_factory=Objectives)
    batching: Batching | None = None
    # The largest request an aiart runtime takes: an HTTP body, or a gRPC
    # message either way (default 16 MiB; gRPC's own default, 4 MiB, is
    # what MLServer's and KServe's users run into).
    maxRequestBytes: int | None = Field(default=None, ge=1024, le=1024**3)
    # How this version takes over from the current one; absent: as soon as
    # it answers (docs/routing.md).
    rollout: Rollout | None = None
    # Replicas from the load, down to zero if allowed (docs/scaling.md);
    # absent: spec.replicas, fixed.
    scaling: Scaling | None = None
    # Requests and answers (or a sample) to the model's bucket; absent: none.
    logging: PayloadLogging | None = None
    # MQTT topics whose messages the model scores (docs/streams.md).
    streams: list[Stream] = Field(default_factory=list, max_length=10)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_REF.match(value):
            raise ValueError(
                f"{value!r} is not an image reference such as registry:5000/team/model:1")
        return value

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: list[str]) -> list[str]:
        for item in value:
            if not PINNED_REQUIREMENT.match(item):
                raise ValueError(
                    f"requirement {item!r} must be pinned as name==version "
                    "(no URLs, paths or pip options)")
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str | None) -> str | None:
        if value is not None and not PYTHON_NAME.match(value):
            raise ValueError(f"entrypoint {value!r} must be a Python class name")
        return value

    @model_validator(mode="after")
    def _runtime_inputs(self) -> Spec:
        if self.runtime is Runtime.IMAGE:
            if self.image is None:
                raise ValueError("runtime image needs spec.image, the image to deploy")
            if self.artifact is not None:
                raise ValueError("runtime image deploys spec.image as is: remove spec.artifact")
            if self.batching is not None:
                raise ValueError("spec.batching is done by aiart's runtimes; a ready image "
                                 "batches (or not) by itself")
            if self.maxRequestBytes is not None:
                raise ValueError("spec.maxRequestBytes is for aiart's runtimes; a ready image "
                                 "sets its own limits")
            if self.logging is not None:
                raise ValueError("spec.logging is done by aiart's runtimes; a ready image "
                                 "logs (or not) by itself")
            if self.rollout is not None and self.rollout.strategy is RolloutStrategy.CANARY:
                raise ValueError("a canary's gate reads the aiart_* metrics that aiart's "
                                 "runtimes export, and a ready image exports none: use "
                                 "strategy shadow, or pin the version with X-Aiart-Version")
        else:
            if self.artifact is None:
                raise ValueError(f"runtime {self.runtime.value} needs spec.artifact")
            if self.image is not None:
                raise ValueError(f"spec.image is only for runtime image, not {self.runtime.value}")
            if self.port != 8080:
                raise ValueError("spec.port is only for runtime image; aiart's runtimes use 8080")
        if self.runtime is not Runtime.PYTHON and (self.requirements or self.entrypoint):
            raise ValueError("spec.requirements and spec.entrypoint are only for runtime python")
        names = [stream.name for stream in self.streams]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names {names} must differ")
        if self.streams and self.auth.mode is AuthMode.OIDC:
            raise ValueError("spec.streams call the model with an API key of their own, and "
                             "a model in auth mode oidc takes tokens: use apikey or none")
        if self.scaling is not None and "replicas" in self.model_fields_set:
            raise ValueError("spec.replicas is fixed and spec.scaling decides the replicas: "
                             "give one of them (scaling.minReplicas is the floor)")
        return self

    @property
    def wants_store(self) -> bool:
        """Whether the model's containers get the store's endpoint and keys of
        their own: asked for, or needed by the payload log."""
        return self.store.credentials or self.logging is not None

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not ENV_NAME.match(key):
                raise ValueError(f"environment variable name {key!r} is not valid")
            if key.startswith("AIART_"):
                raise ValueError(f"environment variable {key!r}: the AIART_ prefix is reserved")
            if "\x00" in item:
                raise ValueError(f"environment variable {key!r} contains a NUL byte")
        return value


class Manifest(_Strict):
    apiVersion: Literal["aiart/v1"]
    kind: Literal["Model"]
    metadata: Metadata
    spec: Spec


@dataclass(frozen=True, slots=True)
class ManifestError(Exception):
    """Everything wrong with one manifest, each problem with its field path."""

    problems: tuple[str, ...]

    def __str__(self) -> str:
        return "; ".join(self.problems)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "manifest"


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _document(data: bytes | str, what: str, shape: str) -> dict[str, Any]:
    """A YAML (or JSON) mapping, or ``ManifestError`` saying why it is not one."""
    if isinstance(data, bytes):
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError((f"{what} is {len(data)} bytes; at most {MAX_MANIFEST_BYTES}",))
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError((f"{what} is not UTF-8 text: {exc}",)) from None
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ManifestError((f"{what} is not valid YAML: {exc}".replace("\n", " "),)) from None
    if not isinstance(document, dict):
        raise ManifestError((f"{what} must be a mapping with {shape}",))
    return document


def _problems(exc: ValidationError, prefix: str = "") -> ManifestError:
    """Each problem with its field's path (``prefix``: the path of what was
    validated, e.g. "stream"; none: a whole manifest's)."""
    def where(loc: tuple[int | str, ...]) -> str:
        if not prefix:
            return _location(loc)
        return f"{prefix}.{_location(loc)}" if loc else prefix

    return ManifestError(tuple(f"{where(tuple(err['loc']))}: {_message(err)}"
                               for err in exc.errors()))


def parse_manifest(data: bytes | str) -> Manifest:
    """Parse a YAML (or JSON) manifest; raise ``ManifestError`` listing every problem."""
    document = _document(data, "manifest", "apiVersion, kind, metadata, spec")
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise _problems(exc) from None


def parse_stream(data: bytes | str) -> Stream:
    """A stream binding's config: one stream as under ``spec.streams``
    (docs/streams.md); ``ManifestError`` lists every problem."""
    document = _document(data, "stream binding", "name, topics and the stream's other fields")
    try:
        return Stream.model_validate(document)
    except ValidationError as exc:
        raise _problems(exc, "stream") from None
