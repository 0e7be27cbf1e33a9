"""The REST API and the CLI as a user drives them, through Traefik: deploy a
directory, watch it build, list, call, read logs, remove; errors and exit
codes a script can trust."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GATEWAY, Models, wait_for

pytestmark = pytest.mark.e2e


def cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--url", GATEWAY] + (["--key", key] if key else [])
    return subprocess.run([sys.executable, "-m", "aiart.cli", *args, *extra],
                          capture_output=True, text=True, timeout=600)


def keys(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "aiart.cli", "keys", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def api_keys(run_id: str) -> Iterator[dict[str, str]]:
    made = {"deployer": keys("create", f"t{run_id}-deployer", "--role", "deployer"),
            "viewer": keys("create", f"t{run_id}-viewer", "--role", "viewer")}
    yield made
    for role in made:
        subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke",
                        f"t{run_id}-{role}"], capture_output=True, timeout=60)


def test_deploy_a_directory_then_use_and_remove_it(
        models: Models, iris_pickle: bytes, api_keys: dict[str, str], tmp_path: Path,
        gateway: httpx.Client) -> None:
    model = models.name("cli")
    (tmp_path / "model.pkl").write_bytes(iris_pickle)
    (tmp_path / "manifest.yaml").write_text(
        f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {model}, version: '1'}}\n"
        "spec:\n  runtime: sklearn\n")
    deployer = api_keys["deployer"]

    done = cli("deploy", str(tmp_path), key=deployer)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"/models/{model}")  # the endpoint
    assert "Building" in done.stderr and "Ready" in done.stderr  # progress as it went
    listed = json.loads(cli("ls", "--json", key=api_keys["viewer"]).stdout)
    assert any(m["name"] == model and m["status"] == "Ready" for m in listed)
    assert f"{model}: Ready" in cli("status", model, key=api_keys["viewer"]).stdout

    row = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                  "data": [5.1, 3.5, 1.4, 0.2]}]})
    answer = cli("predict", model, "--data", row, "--json", key=deployer)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["outputs"][0]["data"] == [0]
    closed = cli("predict", model, "--data", row)  # no key: the model is closed
    assert closed.returncode == 1 and "401" in closed.stderr

    logs = cli("logs", model, "--tail", "5", "--json", key=api_keys["viewer"])
    assert logs.returncode == 0 and len(json.loads(logs.stdout)) <= 5

    # Its image in aiart's registry, as the service runs it: in use, kept.
    (service,) = models.services(model)
    running = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    images = gateway.get(f"/api/v1/models/{model}/images",
                         headers={"X-API-Key": api_keys["viewer"]})
    assert images.status_code == 200, images.text
    [image] = images.json()["images"]
    assert running.endswith(f"@{image['digest']}") and image["inUse"], (running, image)
    assert image["tags"][0].startswith("1-") and image["size"] > 10_000_000
    as_deployer = {"X-API-Key": deployer}
    kept = gateway.delete(f"/api/v1/models/{model}/images/{image['digest']}",
                          headers=as_deployer)
    assert kept.status_code == 409, kept.text

    refused = cli("rm", f"{model}:1", key=api_keys["viewer"])
    assert refused.returncode == 1 and "403" in refused.stderr
    removed = cli("rm", f"{model}:1", key=deployer)
    assert removed.returncode == 0 and f"removed {model}-1" in removed.stdout
    assert cli("status", model, key=deployer).returncode == 1  # 404 now
    # Once its service is gone, nothing runs the image: removed from the registry.
    wait_for(lambda: gateway.delete(f"/api/v1/models/{model}/images/{image['digest']}",
                                    headers=as_deployer).status_code == 200, 120,
             "the unused image's removal")
    assert gateway.get(f"/api/v1/models/{model}/images",
                       headers=as_deployer).json()["images"] == []


def test_bad_input_gets_clear_errors_and_exit_codes(
        models: Models, api_keys: dict[str, str], tmp_path: Path, gateway: httpx.Client) -> None:
    model = models.name("clibad")
    bad = tmp_path / "manifest.yaml"
    bad.write_text(f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {model}}}\n"
                   "spec: {runtime: tensorflow}\n")
    done = cli("deploy", str(bad), key=api_keys["deployer"])
    assert done.returncode == 1
    assert "metadata.version: required field is missing" in done.stderr
    assert "spec.runtime" in done.stderr
    assert cli("deploy", str(tmp_path / "nothing")).returncode == 1
    assert gateway.get("/api/v1/models").status_code == 401
    assert gateway.get("/api/v1/models", headers={"X-API-Key": "aiart_x"}).status_code == 401
    assert gateway.get("/api/v1/openapi.json").json()["openapi"].startswith("3.")
    # An injection attempt in the path never reaches the engine as a name.
    assert gateway.get("/api/v1/models/a%60b/logs", headers={
        "X-API-Key": api_keys["viewer"]}).status_code == 400
