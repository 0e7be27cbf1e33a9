"""End-to-end fixtures: the real engine in swarm mode, the stack deployed by
hack/test.sh (Traefik, registry, operator), models declared as configs.

Every config a test creates carries ``aiart.test=<run id>``; teardown removes
those configs, waits for the operator to remove their services, and removes
any left behind by label.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import docker
import gevent.ssl
import httpx
import pytest
import tritonclient.http as triton
from docker.models.configs import Config
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

GATEWAY = os.environ.get("AIART_GATEWAY_URL", "https://localhost:8443")
STACK = os.environ.get("AIART_STACK", "aiart")
# The gateway's entrypoints model routes are on (hack/stack.sh).
ENTRYPOINTS = os.environ.get("AIART_GATEWAY_ENTRYPOINTS", "websecure,internal")
TEST_LABEL = "aiart.test"
# The gateway's certificate is the local CA's (hack/stack.sh): every client
# here (httpx, kserve's, the CLI run as a subprocess) trusts it through
# OpenSSL's SSL_CERT_FILE, as a site adds its own CA to its clients' bundle.
TLS_DIR = os.environ.get("AIART_TLS_DIR") or os.path.join(
    os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "aiart", "tls")
LOCAL_CA = os.environ.get("AIART_TLS_CA") or os.path.join(TLS_DIR, "ca.crt")
# aiart's internal CA: the auth service's, the API's and the registry's
# certificates (hack/stack.sh).
INTERNAL_CA = os.path.join(TLS_DIR, "internal-ca.crt")


def _trust_local_ca() -> None:
    if not os.path.isfile(LOCAL_CA):
        return
    bundle = Path(tempfile.gettempdir()) / f"aiart-tests-ca-{os.getuid()}.pem"
    base = os.environ.get("SSL_CERT_FILE") or certifi.where()
    if base != str(bundle):
        bundle.write_text(Path(base).read_text() + "\n" + Path(LOCAL_CA).read_text())
        os.environ["SSL_CERT_FILE"] = str(bundle)


_trust_local_ca()


def triton_client(path: str) -> triton.InferenceServerClient:
    """tritonclient's HTTP client for the gateway at ``path`` (it takes
    host:port/path and a TLS switch, not a URL)."""
    scheme, _, rest = GATEWAY.partition("://")
    return triton.InferenceServerClient(
        url=f"{rest}{path}", ssl=scheme == "https", ssl_options={"ca_certs": LOCAL_CA},
        ssl_context_factory=gevent.ssl.create_default_context)


def stack_auth(what: str) -> tuple[str, str]:
    """The user and password of ``monitoring`` (Prometheus, Alertmanager) or
    the ``registry``, from the file hack/stack.sh wrote when it made them."""
    prefix = f"AIART_{what.upper()}"
    path = os.environ.get(f"{prefix}_ENV") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"),
        "aiart", f"{what}.env")
    with open(path) as env:
        values = dict(line.rstrip("\n").split("=", 1) for line in env if "=" in line)
    return values[f"{prefix}_USER"], values[f"{prefix}_PASSWORD"]


def aiart(*args: str) -> str:
    """Run aiart's CLI as a user does; its output, or fail with its error."""
    done = subprocess.run([sys.executable, "-m", "aiart.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"aiart {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def gateway_lines(engine: docker.DockerClient, since: float) -> list[str]:
    """The gateway's log since ``since`` (epoch seconds): its own lines and
    its access log's, one JSON object each (stack.yml)."""
    logs = engine.services.get(f"{STACK}_traefik").logs(
        stdout=True, stderr=True, since=int(since))
    return b"".join(logs).decode(errors="replace").splitlines()


def gateway_errors(engine: docker.DockerClient, since: float) -> list[dict[str, Any]]:
    """The gateway's access-log records since ``since``: its answers of 500
    or more, with the router, the service and the upstream's status."""
    found = []
    for line in gateway_lines(engine, since):
        try:
            record = json.loads(line[line.find("{"):])
        except ValueError:
            continue
        if isinstance(record, dict) and "DownstreamStatus" in record:
            found.append(record)
    return found


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    if client.info()["Swarm"]["LocalNodeState"] != "active":
        pytest.fail("the engine is not in swarm mode: run ./hack/test.sh, which sets it up")
    yield client
    client.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def iris_pickle() -> bytes:
    x, y = load_iris(return_X_y=True)
    return pickle.dumps(LogisticRegression(max_iter=500, random_state=0).fit(x, y), protocol=5)


@pytest.fixture(scope="session")
def gateway() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=GATEWAY, timeout=10) as client:
        yield client


def manifest(name: str, version: str, artifact: str, runtime: str = "sklearn",
             **spec: str) -> bytes:
    """A manifest; public (auth none) unless ``auth`` is given, since most
    tests are about something else than access control."""
    spec.setdefault("auth", "{mode: none}")
    lines = [
        "apiVersion: aiart/v1", "kind: Model",
        f"metadata: {{name: {name}, version: '{version}'}}",
        "spec:", f"  runtime: {runtime}", f"  artifact: {{uri: 'config://{artifact}'}}",
        *(f"  {k}: {v}" for k, v in spec.items()),
    ]
    return ("\n".join(lines) + "\n").encode()


class Models:
    """Declares models as a user does, and reads their status back."""

    def __init__(self, engine: docker.DockerClient, run_id: str) -> None:
        self.engine = engine
        self.run_id = run_id
        self.names: set[str] = set()
        # Ids of the configs made through config(), in order: a module's
        # clean-up removes those its tests made.
        self.made: list[str] = []

    def name(self, stem: str) -> str:
        model = f"t{self.run_id}-{stem}"
        self.names.add(model)
        return model

    def config(self, name: str, data: bytes, **labels: str) -> Config:
        config = self.engine.configs.create(
            name=name, data=data, labels={TEST_LABEL: self.run_id, **labels})
        self.made.append(config.id)
        return config

    def declare(self, model: str, version: str, artifact: bytes | None,
                manifest_data: bytes | None = None, **spec: str) -> str:
        """Create the artifact config (if given) and the model config; return the latter's name."""
        artifact_name = f"{model}-model-{version}"
        if artifact is not None:
            self.config(artifact_name, artifact)
        data = manifest_data or manifest(model, version, artifact_name, **spec)
        name = f"{model}-{version}"
        self.config(name, data, **{"aiart.model": model})
        return name

    def labels(self, config: str) -> dict[str, str]:
        return dict(self.engine.configs.get(config).attrs["Spec"]["Labels"] or {})

    def wait_status(self, config: str, wanted: str, timeout: float = 180) -> dict[str, str]:
        seen: dict[str, str] = {}

        def check() -> dict[str, str] | None:
            labels = self.labels(config)
            seen.clear()
            seen.update(labels)
            status = labels.get("aiart.status")
            if status == wanted:
                return labels
            if status in ("Failed", "Invalid") and wanted not in ("Failed", "Invalid"):
                raise AssertionError(f"{config} is {status}: {labels.get('aiart.status.message')}")
            return None

        try:
            return wait_for(check, timeout, f"{config} to be {wanted}")
        except AssertionError as timed_out:
            # Where it stood says which part lagged: no status at all (the
            # operator never took it up), Building, or Deploying.
            raise AssertionError(
                f"{timed_out}; it is {seen.get('aiart.status')!r} since "
                f"{seen.get('aiart.status.since')!r}: {seen.get('aiart.status.message')!r}"
            ) from None

    def services(self, model: str) -> list[Any]:
        return self.engine.services.list(filters={"label": f"aiart.model={model}"})


@pytest.fixture(scope="session")
def models(engine: docker.DockerClient, run_id: str) -> Iterator[Models]:
    declared = Models(engine, run_id)
    yield declared
    remove_test_models(declared, set(declared.names))


@pytest.fixture(scope="module", autouse=True)
def module_models(models: Models) -> Iterator[None]:
    """The models a test file declared go when the file is done, not at the
    end of the run: each model's tasks are probed every two seconds, and a
    worker that kept every file's models ran a few dozen of them, enough to
    starve a two-core CI machine."""
    names, made = set(models.names), len(models.made)
    yield
    remove_test_models(models, models.names - names, set(models.made[made:]))


def remove_test_models(declared: Models, names: set[str],
                       made: set[str] | None = None) -> None:
    """Everything the tests declared through ``declared`` for the models
    ``names`` (and through the API, for those models), their services,
    catalog records and images; of the configs made through
    ``declared.config``, those in ``made`` (all when None)."""
    engine, run_id = declared.engine, declared.run_id
    configs = [c for c in engine.configs.list(filters={"label": f"{TEST_LABEL}={run_id}"})
               if made is None or c.id in made]
    # Configs made through aiart's API carry no test label: find them by model.
    made_by_api = [c for c in engine.configs.list(filters={"label": "aiart.model"})
                   + engine.configs.list(filters={"label": "aiart.artifact-of"})
                   if {c.attrs["Spec"]["Labels"].get("aiart.model"),
                       c.attrs["Spec"]["Labels"].get("aiart.artifact-of")} & names]
    known = {c.id for c in configs}
    configs += [c for c in made_by_api if c.id not in known]
    # Model configs first, so that the operator removes their services.
    for config in sorted(configs, key=lambda c: "aiart.model" not in c.attrs["Spec"]["Labels"]):
        try:
            config.remove()
        except docker.errors.APIError:
            pass
    try:
        # Generous: on a loaded CI machine the operator's passes lag (seen:
        # over 30 s); what it has not removed by then is removed below.
        wait_for(lambda: not any(declared.services(m) for m in names), 90,
                 "the operator to remove the test services")
    finally:
        for model in names:
            for service in declared.services(model):
                service.remove()
        # The catalog's records of the test models (it keeps them on purpose).
        for config in engine.configs.list(filters={"label": "aiart.catalog"}):
            if config.attrs["Spec"]["Labels"].get("aiart.catalog.model") in names:
                try:
                    config.remove()
                except docker.errors.APIError:
                    pass
        # The test models' images (a few hundred MB each, one per model and
        # content): left behind, a few runs fill the disk.
        # Listed without inspecting each (images.list does): another test
        # worker's clean-up may remove one between the list and its look.
        for image in engine.api.images(filters={"label": "aiart.model"}):
            if (image.get("Labels") or {}).get("aiart.model") in names:
                for tag in image.get("RepoTags") or [image["Id"]]:
                    try:
                        engine.images.remove(tag, force=True)
                    except docker.errors.APIError:
                        pass  # in use by a container still stopping: left, as before
        declared.names -= names


@pytest.fixture(scope="session")
def operator_service(engine: docker.DockerClient) -> Any:
    services = engine.services.list(filters={"name": f"{STACK}_operator"})
    assert services, f"the stack {STACK} has no operator service: run ./hack/test.sh"
    return services[0]


def running_task_ids(service: Any) -> set[str]:
    service.reload()
    return {t["ID"] for t in service.tasks() if t["Status"]["State"] == "running"}
