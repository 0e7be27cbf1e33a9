"""A model package carried between two swarms that share nothing: exported
from this machine's stack (its engine, its registry), imported into the
multi-node harness (a swarm of its own, with its own registry on its first
manager), each side driven by the CLI as its site's admin runs it, the file
the only thing that goes from one to the other. The harness's swarm never
saw the model nor its image: imported, it is served by the very image the
package carries (the same digest), built nowhere, and answers as it did
where it came from; an untrusted, unsigned or changed package is refused
and declares nothing; a second import does nothing."""

from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path

import docker
import httpx
from aiart.core import labels as L
from aiart.core import packages as P

from tests.chaos.conftest import CLUSTER, Cluster, node_ip, record, remove_model
from tests.e2e.conftest import GATEWAY, Models, remove_test_models, wait_for
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
    model = here.name("carried")
    package, unsigned = tmp_path / "carried-1.aiart", tmp_path / "unsigned.aiart"
    try:
        config = here.declare(model, "1", iris_pickle)
        here.wait_status(config, "Ready", timeout=300)
        with httpx.Client(base_url=GATEWAY, timeout=30) as gateway:
            before = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS))
        assert before.status_code == 200, before.text
        (service,) = here.services(model)
        running = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert cli(tmp_path, "packages", "key", "create", "site-a").returncode == 0
        for path, extra in ((package, ()), (unsigned, ("--unsigned",))):
            done = cli(tmp_path, "export", model, "-o", str(path), *extra)
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

        # Beside it, the floor under import-to-Ready: the same version
        # declared again by hand (no package), its image in the registry
        # already, so that nothing is built either: what any deploy of an
        # image that exists takes on this swarm.
        manifest = base64.b64decode(models.engine.configs.get(config).attrs["Spec"]["Data"])
        models.engine.configs.get(config).remove()
        wait_for(lambda: not models.services(model), 120, "the imported version's service to go")
        started = time.monotonic()
        models.engine.configs.create(name=config, data=manifest, labels={L.MODEL: model})
        models.wait_status(config, "Ready", timeout=300)
        record("package carried between swarms", import_seconds=round(imported, 1),
               ready_seconds=round(ready, 1), package_bytes=package.stat().st_size,
               redeclared_ready_seconds=round(time.monotonic() - started, 1))
    finally:
        cli(tmp_path, "trust", "rm", "site-a", site=site)
        remove_model(models, model)

