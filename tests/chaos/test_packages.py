"""A model package carried between two swarms that share nothing: exported
from this machine's stack (its engine, its registry), imported into the
multi-node harness (a swarm of its own, with its own registry on its first
manager), each side driven by the CLI as its site's admin runs it, the file
the only thing that goes from one to the other. The harness's swarm never
saw the model nor its image: imported, it is served by the very image the
package carries (the same digest), built nowhere, and answers as it did
where it came from; an untrusted, unsigned or changed package is refused
and declares nothing; a second import does nothing. A second model on the
same runtime, imported once the harness holds that runtime (its registry,
its workers), sends only its own layers and is Ready soonest: the
import-to-Ready of a cached base."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import docker
import httpx
from aiart.core import labels as L
from aiart.core import packages as P
from aiart.core.images import repository_of

from tests.chaos.conftest import CLUSTER, Cluster, node_ip, record, remove_model
from tests.e2e.conftest import GATEWAY, Models, remove_test_models
from tests.e2e.test_model_lifecycle import ROWS, infer_body
from tests.e2e.test_packages import cli, statuses

# Where hack/cluster.sh keeps the harness's stack files (hack/lib.sh).
STATE = Path(os.environ.get("AIART_STATE", "/var/lib/aiart"))


def harness_site() -> dict[str, str]:
    """The CLI's settings on one of the harness's managers: its engine, its
    registry and the files its stack was deployed with."""
    first = node_ip(Cluster.first)
    return {"DOCKER_HOST": f"tcp://{first}:2375", "AIART_REGISTRY": f"{first}:5000",
            "AIART_REGISTRY_ENV": str(STATE / f"{CLUSTER}-registry.env"),
            "AIART_STORE_ENV": str(STATE / f"{CLUSTER}-store.env"),
            "AIART_TLS_DIR": str(STATE / f"{CLUSTER}-tls")}


def test_a_package_exported_here_is_served_there_by_the_same_image(
        cluster: Cluster, models: Models, iris_pickle: bytes, tmp_path: Path) -> None:
    # This machine's stack: the model declared, served, exported (signed,
    # and once unsigned), then removed from it altogether.
    here = Models(docker.from_env(), uuid.uuid4().hex[:6])
    model, sibling = here.name("carried"), here.name("sibling")
    package, unsigned = tmp_path / "carried-1.aiart", tmp_path / "unsigned.aiart"
    sibling_package = tmp_path / "sibling-1.aiart"
    try:
        config = here.declare(model, "1", iris_pickle)
        sibling_config = here.declare(sibling, "1", iris_pickle)
        here.wait_status(config, "Ready", timeout=300)
        here.wait_status(sibling_config, "Ready", timeout=300)
        with httpx.Client(base_url=GATEWAY, timeout=30) as gateway:
            before = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS))
        assert before.status_code == 200, before.text
        (service,) = here.services(model)
        running = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert cli(tmp_path, "packages", "key", "create", "site-a").returncode == 0
        for name, path, extra in ((model, package, ()), (model, unsigned, ("--unsigned",)),
                                  (sibling, sibling_package, ())):
            done = cli(tmp_path, "export", name, "-o", str(path), *extra)
            assert done.returncode == 0, done.stderr
    finally:
        remove_test_models(here, set(here.names))
    public = tmp_path / "config/aiart/signing/site-a.pub"
    image = P.open_package(P.from_tar(package.read_bytes()),
                           [P.load_public_key(public.read_bytes())]).contents.image
    assert image is not None and running.endswith(f"@{P.digest(image.manifest)}"), running

    # The harness's swarm: nothing of the model, and no key trusted yet.
    site = harness_site()
    config = f"{model}-1"
    data = package.read_bytes()
    at = data.index(iris_pickle[:64])
    changed = tmp_path / "changed.aiart"
    changed.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    try:
        refused = cli(tmp_path, "import", str(package), site=site)
        assert refused.returncode == 1 and "does not trust" in refused.stderr, refused.stderr
        added = cli(tmp_path, "trust", "add", "site-a", str(public), site=site)
        assert added.returncode == 0, added.stderr
        for bad, why in ((unsigned, "not signed"), (changed, "does not match its digest")):
            answer = cli(tmp_path, "import", str(bad), site=site)
            assert answer.returncode == 1 and why in answer.stderr, answer.stderr
        assert not models.engine.configs.list(filters={"name": config})

        started = time.monotonic()
        done = cli(tmp_path, "import", str(package), site=site)
        assert done.returncode == 0, done.stderr
        assert "signed by" in done.stderr
        imported = time.monotonic() - started
        labels = models.wait_status(config, "Ready", timeout=300)
        ready = time.monotonic() - started
        (served,) = models.services(model)
        assert served.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].endswith(
            f"@{P.digest(image.manifest)}")
        assert "Building" not in statuses(models, model, labels), labels
        # Where it came from, kept on the version (the API and the pages show it).
        origin = P.read_origin(labels.get(L.PACKAGE, ""))
        assert origin is not None, labels
        assert origin["signer"] == P.key_id(P.load_public_key(public.read_bytes()))
        assert origin["keyName"] == "site-a" and origin["image"] == running
        assert origin["libraries"].startswith("scikit-learn=="), origin
        with httpx.Client(base_url=cluster.gateway(), timeout=30) as gateway:
            after = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS))
        assert after.status_code == 200, after.text
        assert after.json()["outputs"] == before.json()["outputs"]

        again = cli(tmp_path, "import", str(package), site=site)
        assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr

        # The runtime is here now: in the registry (the first model's
        # layers) and, pulled as a site's admin would pull a base, on every
        # worker. The second model sends only its own layers, links the
        # rest, and its task starts with nothing to pull but them.
        running_there = served.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        registry = site["AIART_REGISTRY"]
        repository = f"{registry}/{repository_of(running_there, registry)}"
        registry_env = dict(line.split("=", 1) for line in Path(
            site["AIART_REGISTRY_ENV"]).read_text().split() if "=" in line)
        login = {"username": registry_env["AIART_REGISTRY_USER"],
                 "password": registry_env["AIART_REGISTRY_PASSWORD"]}
        for worker in (n for n, a in cluster.nodes().items() if a["Spec"]["Role"] == "worker"):
            with cluster.node_engine(worker) as node:
                node.images.pull(repository, tag=P.digest(image.manifest), auth_config=login)
        started = time.monotonic()
        done = cli(tmp_path, "import", str(sibling_package), site=site)
        assert done.returncode == 0, done.stderr
        cached_import = time.monotonic() - started
        models.wait_status(f"{sibling}-1", "Ready", timeout=300)
        cached_ready = time.monotonic() - started
        moved = re.search(r"([\d.]+) MB sent, ([\d.]+) MB linked", done.stderr)
        assert moved, done.stderr
        sent, linked = float(moved[1]), float(moved[2])
        assert sent < 1 < linked, f"the runtime's layers were sent again: {done.stderr}"
        record("package carried between swarms", import_seconds=round(imported, 1),
               ready_seconds=round(ready, 1), package_bytes=package.stat().st_size,
               cached_import_seconds=round(cached_import, 1),
               cached_ready_seconds=round(cached_ready, 1), cached_sent_mb=sent,
               cached_linked_mb=linked)
    finally:
        cli(tmp_path, "trust", "rm", "site-a", site=site)
        remove_model(models, model)
        remove_model(models, sibling)

