"""Model packages from the running stack: a served version exported with
``aiart export`` into one signed file (docs/packages.md) that holds its
manifest, its model file and the very image its service runs, read from the
real registry by digest; the file reads back whole with the signer's public
key, the same export gives the same bytes, a changed byte is refused; the
swarm's trusted keys are managed with ``aiart trust``. Imported into
another swarm: tests/chaos/test_packages.py."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiart.core import packages as P

from tests.e2e.conftest import TLS_DIR, Models, aiart, wait_for
from tests.e2e.test_model_lifecycle import ROWS, infer_body

# Alone: each test moves a 184 MB image through the registry, the gateway
# and the API several times; beside timing-sensitive tests (rollouts,
# scaling) that load made them fail in CI.
pytestmark = [pytest.mark.e2e, pytest.mark.alone]


def cli(tmp_path: Path, *args: str, site: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """The CLI on this manager, its own keys in ``tmp_path`` (the stack's
    files where hack/stack.sh left them); ``site``: the settings of another
    swarm's manager instead (its engine, registry and files)."""
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "AIART_REGISTRY_ENV": os.environ.get("AIART_REGISTRY_ENV")
           or os.path.join(config, "aiart", "registry.env"),
           "AIART_STORE_ENV": os.environ.get("AIART_STORE_ENV")
           or os.path.join(config, "aiart", "store.env"),
           "AIART_TLS_DIR": TLS_DIR, **(site or {})}
    return subprocess.run([sys.executable, "-m", "aiart.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_a_served_version_is_exported_signed_with_the_image_it_runs(
        models: Models, iris_pickle: bytes, tmp_path: Path) -> None:
    model = models.name("pkg")
    config = models.declare(model, "1", iris_pickle)
    models.wait_status(config, "Ready", timeout=300)
    (service,) = models.services(model)
    running = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]

    unsigned = cli(tmp_path, "export", model, "-o", str(tmp_path / "x.aiart"))
    assert unsigned.returncode == 1 and "no signing key" in unsigned.stderr, unsigned.stderr
    made = cli(tmp_path, "packages", "key", "create", "site-a")
    assert made.returncode == 0, made.stderr
    public = Path(made.stdout.strip())
    assert oct((tmp_path / "config/aiart/signing/site-a.pem").stat().st_mode)[-3:] == "600"

    package = tmp_path / f"{model}-1.aiart"
    done = cli(tmp_path, "export", f"{model}:1", "-o", str(package))
    assert done.returncode == 0, done.stderr
    assert "signed with site-a" in done.stderr
    opened = P.open_package(P.from_tar(package.read_bytes()),
                            [P.load_public_key(public.read_bytes())])
    contents = opened.contents
    assert (contents.name, contents.version, contents.format) == (model, "1", "sklearn")
    assert contents.artifact == iris_pickle
    declared = base64.b64decode(models.engine.configs.get(config).attrs["Spec"]["Data"])
    assert contents.manifest == declared
    # The image its service runs, byte for byte: the same digest.
    assert contents.image is not None
    assert running.endswith(f"@{P.digest(contents.image.manifest)}"), running
    assert contents.provenance["image"] == running
    assert sum(b.size for b in contents.image.blobs.values()) > 10_000_000
    # The same version exported again: the same bytes.
    again = tmp_path / "again.aiart"
    assert cli(tmp_path, "export", model, "-o", str(again)).returncode == 0
    assert again.read_bytes() == package.read_bytes()
    # A byte of the model file changed: refused.
    data = package.read_bytes()
    at = data.index(iris_pickle[:64])
    tampered = data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]
    with pytest.raises(P.PackageError, match="does not match its digest"):
        P.open_package(P.from_tar(tampered), [P.load_public_key(public.read_bytes())])

    # The swarm's trusted keys.
    key_id = P.key_id(P.load_public_key(public.read_bytes()))
    try:
        added = cli(tmp_path, "trust", "add", "site-a", str(public))
        assert added.returncode == 0 and key_id in added.stdout, added.stderr
        listed = cli(tmp_path, "trust", "ls")
        assert "site-a" in listed.stdout and key_id in listed.stdout
        bad = cli(tmp_path, "trust", "add", "bad", str(tmp_path / "config/aiart/signing/"
                                                       "site-a.pem"))
        assert bad.returncode == 1 and "public key" in bad.stderr, bad.stderr
    finally:
        removed = cli(tmp_path, "trust", "rm", "site-a")
    assert removed.returncode == 0 and "no longer trusted" in removed.stdout
    assert "site-a" not in cli(tmp_path, "trust", "ls").stdout
    missing = cli(tmp_path, "export", f"{model}-none", "-o", str(tmp_path / "y.aiart"))
    assert missing.returncode == 1 and "no model" in missing.stderr


def statuses(models: Models, model: str, labels: dict[str, str]) -> list[str]:
    """The statuses the catalog recorded for the model's config as it is now."""
    found = []
    for config in models.engine.configs.list(filters={"label": f"aiart.catalog.model={model}"}):
        spec_labels = config.attrs["Spec"]["Labels"]
        if spec_labels.get("aiart.catalog.key", "").endswith(
                f"/{models.engine.configs.get(f'{model}-1').id}"):
            found += [e["status"] for e in json.loads(spec_labels["aiart.catalog.history"])]
    assert found, f"no catalog record of {model}-1"
    return found


def test_the_api_exports_a_version_and_imports_it_back_with_its_image(
        models: Models, iris_pickle: bytes, tmp_path: Path, gateway: httpx.Client,
        run_id: str) -> None:
    """Through the gateway, as the dashboard calls it: a version deployed
    through the API exported by its deployer (unsigned: this stack gives the
    API no signing key), then removed with its image; imported back (an
    unsigned package needs an admin who says so), it is served by the very
    image the package carries, with no build, though the package names a tag
    this site's aiart would not build it as (another aiart version's)."""
    deployer = aiart("keys", "create", f"t{run_id}-pkgapi", "--role", "deployer")
    admin = aiart("keys", "create", f"t{run_id}-pkgapi-admin", "--role", "admin")
    model = models.name("pkgapi")
    try:
        made = gateway.post("/api/v1/models", headers={"X-API-Key": deployer}, files={
            "manifest": ("manifest.yaml", f"apiVersion: aiart/v1\nkind: Model\nmetadata: "
                         f"{{name: {model}, version: '1'}}\nspec:\n  runtime: sklearn\n"
                         "  auth: {mode: none}\n"),
            "artifact": ("model.pkl", iris_pickle)})
        assert made.status_code == 202, made.text
        models.wait_status(f"{model}-1", "Ready", timeout=300)
        before = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS)).json()
        (service,) = models.services(model)
        running = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        exported = gateway.get(f"/api/v1/models/{model}/package?version=1",
                               headers={"X-API-Key": deployer}, timeout=120)
        assert exported.status_code == 200, exported.text
        assert exported.headers["x-aiart-package-signer"] == "unsigned"
        opened = P.open_package(P.from_tar(exported.content), [], allow_unsigned=True)
        image = opened.contents.image
        assert image is not None and running.endswith(f"@{P.digest(image.manifest)}")
        # As another aiart version would have exported it: built under a tag
        # this site's recipe does not compute. It must run all the same.
        built_as = str(opened.contents.provenance["imageTag"])
        package = P.to_tar(P.build(dataclasses.replace(opened.contents, provenance={
            **opened.contents.provenance,
            "imageTag": f"{built_as.rpartition(':')[0]}:1-elsewhere"}), None))

        gone = gateway.delete(f"/api/v1/models/{model}", headers={"X-API-Key": deployer})
        assert gone.status_code == 200, gone.text
        wait_for(lambda: not models.services(model), 120, "the version's service to go")
        digest = P.digest(image.manifest)
        wait_for(lambda: gateway.delete(f"/api/v1/models/{model}/images/{digest}",
                                        headers={"X-API-Key": deployer}).status_code == 200,
                 60, "its image to be removed")

        def post(key: str, query: str = "") -> httpx.Response:
            return gateway.post(f"/api/v1/packages{query}", content=package, timeout=120,
                                headers={"X-API-Key": key, "Content-Type": "application/x-tar"})
        refused = post(deployer)
        assert refused.status_code == 400 and "not signed" in refused.text, refused.text
        assert post(deployer, "?allowUnsigned=true").status_code == 403
        done = post(admin, "?allowUnsigned=true")
        assert done.status_code == 201, done.text
        labels = models.wait_status(f"{model}-1", "Ready", timeout=300)
        (service,) = models.services(model)
        assert service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].endswith(
            f"@{digest}")
        assert service.attrs["Spec"]["Labels"]["aiart.image-tag"].endswith(":1-elsewhere")
        assert "Building" not in statuses(models, model, labels), labels
        after = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS)).json()
        assert after["outputs"] == before["outputs"]
        again = post(admin, "?allowUnsigned=true")
        assert again.status_code == 200 and "nothing to do" in again.text
    finally:
        for name in (f"t{run_id}-pkgapi", f"t{run_id}-pkgapi-admin"):
            subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", name],
                           capture_output=True, timeout=60)
