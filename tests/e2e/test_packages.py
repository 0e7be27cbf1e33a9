"""Model packages from the running stack: a served version exported with
``aiart export`` into one signed file (docs/packages.md) that holds its
manifest, its model file and the very image its service runs, read from the
real registry by digest; the file reads back whole with the signer's public
key, the same export gives the same bytes, a changed byte is refused; the
swarm's trusted keys are managed with ``aiart trust``; and imported where
the model, its file and its image are gone (as on another site sharing
nothing: the same swarm stands in for one), the package is served by the
same image with no build, and answers as before."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiart.core import packages as P

from tests.e2e.conftest import INTERNAL_CA, TLS_DIR, Models, stack_auth, wait_for
from tests.e2e.test_model_lifecycle import ROWS, infer_body

pytestmark = pytest.mark.e2e


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on this manager, its own keys in ``tmp_path`` (the stack's
    files where hack/stack.sh left them)."""
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "AIART_REGISTRY_ENV": os.environ.get("AIART_REGISTRY_ENV")
           or os.path.join(config, "aiart", "registry.env"),
           "AIART_STORE_ENV": os.environ.get("AIART_STORE_ENV")
           or os.path.join(config, "aiart", "store.env"),
           "AIART_TLS_DIR": TLS_DIR}
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
    assert sum(len(b) for b in contents.image.blobs.values()) > 10_000_000
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


def test_an_imported_package_is_served_with_the_same_image_and_no_build(
        models: Models, iris_pickle: bytes, tmp_path: Path, gateway: httpx.Client) -> None:
    """As on another site: the version, its model file and its image gone
    from this swarm (its registry and its engine), the package imported is
    served by the very image it carries, with no build, and answers as before."""
    model = models.name("pkgin")
    config = models.declare(model, "1", iris_pickle)
    models.wait_status(config, "Ready", timeout=300)
    before = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS)).json()["outputs"]
    assert cli(tmp_path, "packages", "key", "create", "site-a").returncode == 0
    package = tmp_path / "p.aiart"
    assert cli(tmp_path, "export", model, "-o", str(package)).returncode == 0
    public = tmp_path / "config/aiart/signing/site-a.pub"
    image = P.open_package(P.from_tar(package.read_bytes()),
                           [P.load_public_key(public.read_bytes())]).contents.image
    assert image is not None
    digest = P.digest(image.manifest)

    # Another site: nothing of the model here, and no key trusted yet.
    tag = models.labels(config)["aiart.status.image"].partition("@")[0]
    for name in (config, f"{model}-model-1"):
        models.engine.configs.get(name).remove()
    wait_for(lambda: not models.services(model), 120, "the version's service to go")
    user, password = stack_auth("registry")
    with httpx.Client(base_url=f"https://{tag.partition('/')[0]}", verify=INTERNAL_CA,
                      auth=(user, password), timeout=30) as registry:
        gone = registry.delete(f"/v2/aiart/{model}/manifests/{digest}")
        assert gone.status_code == 202, gone.text
    models.engine.images.remove(tag, force=True)

    refused = cli(tmp_path, "import", str(package))
    assert refused.returncode == 1 and "does not trust" in refused.stderr, refused.stderr
    try:
        assert cli(tmp_path, "trust", "add", "site-a", str(public)).returncode == 0
        started = time.monotonic()
        done = cli(tmp_path, "import", str(package))
        assert done.returncode == 0, done.stderr
        assert "signed by" in done.stderr
        imported = time.monotonic() - started
        labels = models.wait_status(config, "Ready", timeout=300)
        # The figure docs/benchmarks.md gives (pytest -s shows it).
        print(f"import {imported:.1f} s, to Ready {time.monotonic() - started:.1f} s, "
              f"package {package.stat().st_size:,} bytes")
        (service,) = models.services(model)
        assert service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].endswith(
            f"@{digest}")
        assert "Building" not in statuses(models, model, labels), labels
        after = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS)).json()["outputs"]
        assert after == before
        # Again: nothing to do.
        again = cli(tmp_path, "import", str(package))
        assert again.returncode == 0 and "nothing to do" in again.stderr
    finally:
        cli(tmp_path, "trust", "rm", "site-a")
    # Unsigned, or changed: refused.
    unsigned = tmp_path / "u.aiart"
    assert cli(tmp_path, "export", model, "--unsigned", "-o", str(unsigned)).returncode == 0
    assert "not signed" in cli(tmp_path, "import", str(unsigned)).stderr


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
