"""The reliability scenarios' fixtures: a multi-node Swarm of Docker-in-Docker
nodes (hack/cluster.sh: three managers, two workers) with aiart's stack on
it, and the means to hurt it: kill the operator, kill, pause or cut off a
node, restart a node's engine, stop the registry.

The harness is brought up once for this package and removed after it, unless
it was already up (then it is left as found, for hack/chaos.sh and by-hand
runs); hack/test.sh brings it up in the background while the other tests
run, and removes it itself. Each scenario writes what it measured to
``AIART_CHAOS_REPORT`` (JSON lines), which hack/test.sh and hack/chaos.sh
print as a table.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import requests
from aiart.core import labels as L
from docker.models.configs import Config
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import TEST_LABEL, Models, wait_for

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("AIART_CLUSTER", "aiart")
PREFIX = os.environ.get("AIART_CLUSTER_SUBNET_PREFIX", "172.30.7")
STACK = os.environ.get("AIART_STACK", "aiart")
GATEWAY_PORT = int(os.environ.get("AIART_GATEWAY_PORT", "8080"))
IRIS_ROWS = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                         "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}


def knob(name: str, default: int) -> int:
    """A scenario's size: short in CI, long in hack/chaos.sh."""
    return int(os.environ.get(name, default))


def record(scenario: str, **figures: Any) -> None:
    """Keep what a scenario measured: printed, and appended to the report."""
    line = json.dumps({"scenario": scenario, **figures}, sort_keys=True)
    print(f"\nchaos: {line}")
    path = os.environ.get("AIART_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def tolerant(check: Callable[[], Any]) -> Callable[[], Any]:
    """A check that counts a swarm without a leader (a manager was just
    lost, an election runs) as "not yet" rather than as a failure."""
    def run() -> Any:
        try:
            return check()
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            return None
    return run


# What the swarm answers a write while it elects a leader (a manager was
# just lost or stopped): the write may or may not have been committed.
ELECTION_ERRORS = ("DeadlineExceeded", "does not have a leader", "rpc error: code = Unavailable")


def through_election(write: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Do a user's write to the swarm, again while the swarm answers that
    it has no leader yet, as a user (or Portainer) would retry. Scenarios
    that hurt a manager write right after; a slow machine's election once
    outlasted the engine's deadline ("context deadline exceeded" on a
    config create), and that is the swarm's behaviour, not aiart's."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return write()
        except docker.errors.APIError as exc:
            if not any(e in str(exc) for e in ELECTION_ERRORS) or time.monotonic() > deadline:
                raise
            print(f"\nchaos: {what} met an election ({exc}); again")
            time.sleep(1)


class ChaosModels(Models):
    """Models declared and removed through elections: a write the swarm
    timed out on may have landed after all, so a retried create that finds
    its config (same labels) takes it as done."""

    def config(self, name: str, data: bytes, **labels: str) -> Config:
        def create() -> Config:
            try:
                return super(ChaosModels, self).config(name, data, **labels)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                found = self.engine.configs.get(name)
                if found.attrs["Spec"].get("Labels", {}).get(TEST_LABEL) != self.run_id:
                    raise
                return found
        config: Config = through_election(create, f"creating {name}")
        return config


def remove_model(models: Models, model: str) -> None:
    """Remove every config that declares a model, as a user removes it, and
    the model files an import put in configs."""
    def remove() -> None:
        for config in [*models.engine.configs.list(filters={"label": f"aiart.model={model}"}),
                       *models.engine.configs.list(
                           filters={"label": f"{L.ARTIFACT_OF}={model}"})]:
            try:
                config.remove()
            except docker.errors.NotFound:
                pass  # a try before landed after all
    through_election(remove, f"removing {model}")


def node_ip(node: str) -> str:
    role, n = node.removeprefix(f"{CLUSTER}-")[0], int(node.removeprefix(f"{CLUSTER}-")[1:])
    return f"{PREFIX}.{(10 if role == 'm' else 20) + n}"


class Cluster:
    """The harness seen from this machine: its nodes are containers of the
    machine's engine; the swarm is driven through the first manager's API."""

    first = f"{CLUSTER}-m1"

    def __init__(self) -> None:
        self.host = docker.from_env()
        self.engine = docker.DockerClient(base_url=f"tcp://{node_ip(self.first)}:2375", timeout=30)

    @contextmanager
    def node_engine(self, node: str) -> Iterator[docker.DockerClient]:
        """One node's own engine (its containers, their stats)."""
        client = docker.DockerClient(base_url=f"tcp://{node_ip(node)}:2375", timeout=15)
        try:
            yield client
        finally:
            client.close()

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n.attrs["Description"]["Hostname"]: n.attrs for n in self.engine.nodes.list()}

    def node_state(self, node: str) -> str:
        return str(self.nodes()[node]["Status"]["State"])

    def wait_nodes_ready(self, timeout: float = 120) -> None:
        wait_for(lambda: all(n["Status"]["State"] == "ready" for n in self.nodes().values()),
                 timeout, "every node to be ready", every=1)

    def wait_leader(self, timeout: float = 60) -> None:
        """Until the swarm answers writes again (an election after a lost
        manager takes a few seconds)."""
        wait_for(tolerant(lambda: self.engine.nodes.list() is not None), timeout,
                 "the swarm to have a leader", every=0.5)

    def hostname_of(self, node_id: str) -> str:
        return str(self.engine.nodes.get(node_id).attrs["Description"]["Hostname"])

    def service(self, name: str) -> Any:
        return self.engine.services.get(name)

    def running_tasks(self, service: Any) -> list[dict[str, Any]]:
        # Tasks whose node is down still say "running" until Swarm notices:
        # callers that care check the node too.
        service.reload()
        return [t for t in service.tasks(filters={"desired-state": "running"})
                if t["Status"]["State"] == "running"]

    def task_nodes(self, service: Any) -> list[str]:
        return sorted(self.hostname_of(t["NodeID"]) for t in self.running_tasks(service))

    def spread(self, service: Any, tries: int = 4) -> None:
        """Until each of the service's replicas runs on a node of its own.

        Swarm does not move running tasks back to a node that returned, and a
        forced update does not promise a spread either (the soak once saw
        both replicas land on one worker), so: update, let the update finish
        (mid-update an old and a new task may look spread), check, again."""
        replicas = service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
        replaced: set[str] = set()  # tasks the last update replaces

        def settled() -> bool:
            tasks = self.running_tasks(service)
            update = service.attrs.get("UpdateStatus", {}).get("State")
            return (update in (None, "completed") and len(tasks) == replicas
                    and not replaced & {t["ID"] for t in tasks})

        for _ in range(tries):
            wait_for(tolerant(settled), 180, f"{service.name} to settle", every=1)
            if len(set(self.task_nodes(service))) == replicas:
                return
            replaced = {t["ID"] for t in self.running_tasks(service)}
            service.force_update()
        raise AssertionError(f"{service.name}'s replicas share a node after {tries} updates")

    # -- the operator ----------------------------------------------------------

    def operator(self) -> tuple[str, str] | None:
        """(node, container id) of the running operator, if one runs."""
        tasks = self.running_tasks(self.service(f"{STACK}_operator"))
        if not tasks:
            return None
        task = tasks[0]
        return self.hostname_of(task["NodeID"]), str(task["Status"]["ContainerStatus"]["ContainerID"])

    def wait_operator(self, other_than: str | None = None, timeout: float = 120) -> tuple[str, str]:
        found: tuple[str, str] = wait_for(
            tolerant(lambda: (op := self.operator()) is not None and op[1] != other_than
                     and self.node_state(op[0]) == "ready" and op),
            timeout, "a running operator", every=0.5)
        return found

    def kill_operator(self) -> str:
        node, container = self.wait_operator()
        with self.node_engine(node) as engine:
            engine.containers.get(container).kill()  # SIGKILL
        return container

    def operator_metric(self, name: str, **labels: str) -> tuple[str, float]:
        """One of the operator's own metrics, read inside its container, and
        the container that answered. An operator that has just started (the
        scenario before may have killed it) serves its metrics a moment after
        its task runs, so this waits for the endpoint rather than fail on it."""
        code = ("import urllib.request;"
                "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())")

        def read() -> tuple[str, str] | None:
            node, container = self.wait_operator()
            with self.node_engine(node) as engine:
                result = engine.containers.get(container).exec_run(
                    ["/opt/aiart/bin/python", "-c", code])
            if result.exit_code != 0:
                print(f"chaos: the operator's metrics did not answer yet: "
                      f"{result.output.decode(errors='replace').strip().splitlines()[-1:]}")
                return None
            return container, result.output.decode()

        container, text = wait_for(tolerant(read), 60, "the operator's metrics", every=1)
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                         if labels else "")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return container, float(line.split()[-1])
        return container, 0.0

    # -- hurting nodes ---------------------------------------------------------

    def lose(self, node: str, how: str) -> float:
        """Kill, pause (freeze) or cut off a node; the moment it happened."""
        container = self.host.containers.get(node)
        if how == "kill":
            at = time.monotonic()
            container.kill()
        elif how == "pause":
            at = self._freeze(container)
        elif how == "partition":
            at = time.monotonic()
            self.host.networks.get(f"{CLUSTER}-cluster").disconnect(container)
        else:
            raise ValueError(f"unknown way to lose a node: {how}")
        return at

    @staticmethod
    def _freeze(container: Any, tries: int = 5) -> float:
        # The cgroup freezer gives up on a busy node ("unable to freeze": a
        # process it could not stop in time) and thaws it again; the soak met
        # that right after a node had restarted. Another try freezes it.
        for attempt in range(tries):
            at = time.monotonic()
            try:
                container.pause()
                return at
            except docker.errors.APIError as exc:
                if "freeze" not in str(exc) or attempt == tries - 1:
                    raise
                print(f"\nchaos: freezing {container.name} failed ({exc}); once more")
                time.sleep(1)
        raise AssertionError("unreachable")

    def restore(self, node: str, how: str) -> None:
        container = self.host.containers.get(node)
        if how == "kill":
            container.start()
        elif how == "pause":
            if container.status == "paused":  # not if freezing it failed
                container.unpause()
        elif how == "partition":
            self.host.networks.get(f"{CLUSTER}-cluster").connect(
                container, ipv4_address=node_ip(node))

    def stop_engine(self, node: str) -> None:
        """Stop the node's Docker daemon (its container's main process) as a
        service manager would: SIGTERM, then its containers stop."""
        self.host.containers.get(node).stop(timeout=30)

    def start_engine(self, node: str) -> None:
        self.host.containers.get(node).start()

    def heal(self) -> list[str]:
        """Bring back every node a scenario left hurt: start a stopped one,
        thaw a frozen one, reconnect a cut-off one; the nodes healed.

        Scenarios restore what they hurt themselves; this is for the one
        that failed half-way, so that its failure stays its own instead of
        leaving the swarm short of a manager (or of quorum) for the next."""
        network = self.host.networks.get(f"{CLUSTER}-cluster")
        healed = []
        for container in self.host.containers.list(
                all=True, filters={"label": f"aiart.cluster={CLUSTER}"}):
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                container.start()
            else:
                network.reload()
                if any(c.id == container.id for c in network.containers):
                    continue
                network.connect(container, ipv4_address=node_ip(container.name))
            healed.append(container.name)
        if healed:
            print(f"\nchaos: healed {healed} after the scenario")
            self.wait_leader()
            self.wait_nodes_ready()
        return healed

    def operator_off_first(self) -> tuple[str, str]:
        """Keep the operator off the first manager, whose loss would also be
        the registry's and this harness's way in; (node, container)."""
        operator = self.service(f"{STACK}_operator")
        constraint = f"node.hostname!={self.first}"
        placement = operator.attrs["Spec"]["TaskTemplate"].get("Placement", {})
        if constraint not in placement.get("Constraints", []):
            operator.update(constraints=[*placement.get("Constraints", []), constraint])
        found: tuple[str, str] = wait_for(
            tolerant(lambda: (op := self.operator()) and op[0] != self.first
                     and self.node_state(op[0]) == "ready" and op),
            180, "the operator on a manager other than the first", every=1)
        return found

    def gateway(self) -> str:
        """Traefik as a client reaches it: its port on the manager that runs it."""
        tasks = wait_for(lambda: self.running_tasks(self.service(f"{STACK}_traefik")), 120,
                         "a running Traefik")
        return f"http://{node_ip(self.hostname_of(tasks[0]['NodeID']))}:{GATEWAY_PORT}"


def wait_background_harness(state: Path) -> None:
    """hack/test.sh brings the harness up while the other tests run (and
    removes it at the end): wait for it to finish, and say if it failed."""
    done = state / "done"
    wait_for(done.exists, 1200, "the harness that hack/test.sh brings up", every=2)
    status, seconds = done.read_text().split()
    if status != "0":
        log = (state / "up.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"bringing the harness up failed (exit {status}):\n{log}")
    record("harness", setup_seconds=float(seconds), in_background=True)


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    started = time.monotonic()
    background = os.environ.get("AIART_CHAOS_HARNESS")
    owned = False  # brought up here, so removed here
    if background:
        wait_background_harness(Path(background))
    else:
        try:
            was_up = docker.DockerClient(
                base_url=f"tcp://{node_ip(Cluster.first)}:2375", timeout=3).ping()
        except Exception:
            was_up = False
        if not was_up:
            subprocess.run([str(ROOT / "hack/cluster.sh"), "up"], check=True)
            subprocess.run([str(ROOT / "hack/cluster.sh"), "stack"], check=True)
            record("harness", setup_seconds=round(time.monotonic() - started, 1))
            owned = True
    cluster = Cluster()
    cluster.wait_nodes_ready()
    cluster.wait_operator()
    yield cluster
    # This package's part of a test run, harness set-up (or the wait for it) included.
    record("all scenarios", wall_seconds=round(time.monotonic() - started, 1))
    if owned and not os.environ.get("AIART_CHAOS_KEEP"):
        subprocess.run([str(ROOT / "hack/cluster.sh"), "down"], check=False)


@pytest.fixture(autouse=True)
def healed_after(cluster: Cluster) -> Iterator[None]:
    yield
    healed = cluster.heal()
    # A scenario that passed must have restored what it hurt itself.
    assert not healed, f"the scenario left {healed} hurt"


@pytest.fixture(scope="package")
def iris_pickle() -> bytes:
    x, y = load_iris(return_X_y=True)
    return pickle.dumps(LogisticRegression(max_iter=500, random_state=0).fit(x, y), protocol=5)


@pytest.fixture(scope="package")
def models(cluster: Cluster) -> Models:
    # The harness is removed with everything on it: no per-test cleanup.
    return ChaosModels(cluster.engine, uuid.uuid4().hex[:6])


@dataclass
class Served:
    """A two-replica model served all through the scenarios: what each one
    hurts must leave it Ready, answering, and its service untouched."""

    model: str
    config: str
    # Its service's spec (changed only by a test's own update). Not the
    # version index: Swarm bumps that when a rolling update's status moves.
    spec: dict[str, Any]

    def check_untouched(self, cluster: Cluster, models: Models) -> None:
        (service,) = models.services(self.model)
        assert service.attrs["Spec"] == self.spec, (
            f"{self.model}'s service was changed")
        assert models.labels(self.config)["aiart.status"] == "Ready"
        with httpx.Client(base_url=cluster.gateway(), timeout=10) as http:
            answer = http.post(f"/v2/models/{self.model}/infer", json=IRIS_ROWS)
        assert answer.status_code == 200, f"{self.model} answered {answer.status_code}"


@dataclass
class Spares:
    """Models that scenarios need Ready before they hurt the swarm (one to
    remove while the operator's engine is away, one during the registry
    outage). The first round's are declared together with the served model,
    so that they build side by side rather than one scenario after another;
    later rounds (the soak) declare theirs when they need them."""

    models: Models
    artifact: bytes
    declared: dict[str, str] = field(default_factory=dict)  # short name -> config

    FIRST_ROUND = ("gone0", "doomed0")

    def declare(self, short: str) -> None:
        self.declared[short] = self.models.declare(self.models.name(short), "1", self.artifact)

    def ready(self, short: str) -> tuple[str, str]:
        """(model, config) of a Ready spare."""
        if short not in self.declared:
            self.declare(short)
        config = self.declared[short]
        self.models.wait_status(config, "Ready", timeout=300)
        return self.models.name(short), config


@pytest.fixture(scope="package")
def spares(models: Models, iris_pickle: bytes) -> Spares:
    spares = Spares(models, iris_pickle)
    for short in Spares.FIRST_ROUND:
        spares.declare(short)
    return spares


@pytest.fixture(scope="package")
def served(cluster: Cluster, models: Models, iris_pickle: bytes, spares: Spares) -> Served:
    # Depends on the spares only so that they are declared first and build
    # while this one does.
    model = models.name("served")
    config = models.declare(model, "1", iris_pickle, replicas="2")
    models.wait_status(config, "Ready", timeout=300)
    (service,) = models.services(model)
    wait_for(lambda: len(cluster.task_nodes(service)) == 2, 120, "two running replicas")
    return Served(model, config, service.attrs["Spec"])


@dataclass
class Traffic:
    """Clients sending inferences through the gateway until stopped; every
    request's start, end and outcome kept."""

    url: str
    clients: int = 4
    results: list[tuple[float, float, str]] = field(default_factory=list)  # "" = ok
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        with httpx.Client(timeout=15) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    code = http.post(self.url, json=IRIS_ROWS).status_code
                    error = "" if code == 200 else str(code)
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                self.results.append((start, time.monotonic(), error))

    def __enter__(self) -> Traffic:
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def failed(self) -> list[tuple[float, float, str]]:
        return [r for r in self.results if r[2]]

    def in_flight_at(self, moment: float) -> int:
        return sum(1 for start, end, _ in self.results if start <= moment < end)
