"""Nobody without the registry's password can push, pull or delete a model's
image, and the password crosses the network over HTTPS only; and a service
runs its image by digest (the one aiart built and pushed, or the one the
registry gave for a ready image's tag), so that even a push with the password
to the same tag later changes nothing that runs, when the task restarts or
the route moves. Against the real engine and registry."""

from __future__ import annotations

import os

import docker
import httpx

from tests.e2e.conftest import INTERNAL_CA, Models, stack_auth, wait_for
from tests.e2e.test_image_runtime import byo

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


def test_a_push_to_a_models_tag_does_not_change_what_runs(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    model = models.name("pinned")
    config = models.declare(model, "1", iris_pickle)
    tag = models.wait_status(config, "Ready")["aiart.status.image"]
    engine = models.engine
    (service,) = models.services(model)
    image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    repository, _, version = tag.rpartition(":")
    assert image.startswith(f"{repository}@sha256:"), image

    registry, _, name = repository.partition("/")
    digest = image.partition("@")[2]
    # HTTPS only (the password crosses the network), with a certificate of
    # aiart's internal CA; plain HTTP gets no registry answer.
    with httpx.Client(base_url=f"http://{registry}", timeout=10) as plain:
        assert plain.get("/v2/").status_code == 400  # Go's answer to HTTP on a TLS port
    # Without the password: nothing to read, nothing to delete.
    with httpx.Client(base_url=f"https://{registry}", timeout=10, verify=INTERNAL_CA) as client:
        for method in ("GET", "DELETE"):
            answer = client.request(method, f"/v2/{name}/manifests/{digest}")
            assert answer.status_code == 401, (method, answer.status_code)
        assert client.get("/v2/_catalog").status_code == 401
        user, password = stack_auth("registry")
        assert client.get("/v2/_catalog", auth=(user, "not-" + password)).status_code == 401
        assert client.get(f"/v2/{name}/manifests/{digest}", auth=(user, password), headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"}).status_code == 200

    # The same image, handed over as a ready image by its tag, runs by the
    # digest the registry gives for the tag.
    ready = models.declare(model, "r", None, manifest_data=byo(model, "r", tag))
    models.wait_status(ready, "Ready")
    (ready_service,) = [s for s in models.services(model)
                        if s.attrs["Spec"]["Labels"]["aiart.version"] == "r"]
    assert ready_service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == image

    # Another image under the model's tag: refused without the password...
    base = os.environ.get("AIART_BASE_IMAGE", "")
    assert base, "AIART_BASE_IMAGE is set by ./hack/test.sh"
    engine.images.get(base).tag(repository, version)
    try:
        pushed = list(engine.images.push(repository, tag=version, stream=True, decode=True))
        assert any("error" in line for line in pushed), pushed[-3:]
        # ... and with it (one who holds it), still not what runs.
        for line in engine.images.push(repository, tag=version, stream=True, decode=True,
                                       auth_config={"username": user, "password": password}):
            assert "error" not in line, line
        before = {t["ID"] for t in service.tasks()}
        service.force_update()
        wait_for(lambda: any(t["ID"] not in before and t["Status"]["State"] == "running"
                             for t in service.tasks()), 120, "the restarted task")
        answer = wait_for(lambda: (r := gateway.post(f"/v2/models/{model}/infer", json=ROW))
                          .status_code == 200 and r, 60, "the model after its restart")
        assert answer.json()["model_name"] == model
        # A new version takes the route: version 1's labels change, its pin stays.
        models.wait_status(models.declare(model, "2", iris_pickle), "Ready")
        wait_for(lambda: "aiart.status.current" in models.labels(config)
                 and models.labels(config)["aiart.status.current"] == "false", 60,
                 "version 1 to give up the model's route")
        for pinned in (service, ready_service):
            pinned.reload()
            assert pinned.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == image
    finally:
        try:
            engine.images.remove(tag)
        except docker.errors.APIError:
            pass
