"""Bad input: each gets a status a user can act on; nothing else is disturbed,
and fixing the input recovers without restarting anything."""

from __future__ import annotations

import pickle

import httpx
import pytest

from tests.e2e.conftest import Models, manifest, wait_for


@pytest.mark.parametrize(
    ("stem", "data", "expected"),
    [
        ("yaml", b"apiVersion: aiart/v1\nkind: [unclosed\n", "not valid YAML"),
        ("unknown", None, "spec.bogus: unknown field"),
        ("name", None, "must be a DNS label"),
        ("missing", b"apiVersion: aiart/v1\nkind: Model\n", "metadata: required field is missing"),
    ],
)
def test_invalid_manifests(models: Models, stem: str, data: bytes | None, expected: str) -> None:
    model = models.name(stem)
    if data is None and stem == "unknown":
        data = manifest(model, "1", "x", bogus="1")
    elif data is None:
        data = manifest(model.upper(), "1", "x")
    config = models.declare(model, "1", None, manifest_data=data)
    labels = models.wait_status(config, "Invalid", timeout=60)
    assert expected in labels["aiart.status.message"], labels
    assert not models.services(model)


def test_missing_artifact_then_created(models: Models, iris_pickle: bytes) -> None:
    model = models.name("late")
    config = models.declare(model, "1", None)
    labels = models.wait_status(config, "Failed", timeout=60)
    assert f"docker config create {model}-model-1" in labels["aiart.status.message"]
    models.config(f"{model}-model-1", iris_pickle)
    wait_for(lambda: models.labels(config).get("aiart.status") != "Failed", 60,
             "the operator to notice the new artifact")
    models.wait_status(config, "Ready", timeout=300)


def test_corrupt_and_unloadable_pickles(models: Models, gateway: httpx.Client) -> None:
    garbage = models.name("garbage")
    config = models.declare(garbage, "1", b"this is not a model")
    labels = models.wait_status(config, "Failed", timeout=60)
    assert "not a pickle" in labels["aiart.status.message"]

    # Looks like a pickle, does not load: the image build's load check says so.
    broken = models.name("broken")
    config = models.declare(broken, "1", pickle.dumps({"_sklearn_version": "1.9.1"})[:-3])
    labels = models.wait_status(config, "Failed", timeout=240)
    assert "does not load" in labels["aiart.status.message"], labels
    assert not models.services(broken)

    # A pickle that would run a command is refused by the safe loader.
    evil = models.name("evil")
    config = models.declare(evil, "1", b"\x80\x04cos\nsystem\n(S'touch /tmp/aiart-pwned'\ntR.")
    labels = models.wait_status(config, "Failed", timeout=240)
    assert "asks for os.system" in labels["aiart.status.message"], labels


def test_duplicate_version_is_invalid(models: Models, iris_pickle: bytes) -> None:
    model = models.name("dup")
    first = models.declare(model, "1", iris_pickle)
    models.wait_status(first, "Ready", timeout=300)
    second = models.config(f"{model}-1-dup", manifest(model, "1", f"{model}-model-1"),
                           **{"aiart.model": model})
    labels = models.wait_status(second.name, "Invalid", timeout=60)
    assert f"already declared by config {first}" in labels["aiart.status.message"]
    assert models.labels(first)["aiart.status"] == "Ready"
    assert len(models.services(model)) == 1


def test_a_model_that_cannot_start_is_failed(models: Models, iris_pickle: bytes) -> None:
    model = models.name("oom")
    # 6 MiB cannot hold a Python with numpy: the container is killed at start.
    config = models.declare(model, "1", iris_pickle, resources="{limits: {memory: 6Mi}}")
    labels = models.wait_status(config, "Failed", timeout=240)
    assert "keeps failing" in labels["aiart.status.message"], labels
