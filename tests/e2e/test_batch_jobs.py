"""Batch jobs through the stack: ``aiart batch run`` as a user types it, the
API's labelled config, the operator's Swarm job of the model's image (with
the job's own layer), the real object store; a task killed mid-way."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker
import numpy as np
import pytest
from aiart.store.client import ObjectStore

from tests.e2e.conftest import GATEWAY, Models, wait_for
from tests.e2e.test_object_store import store  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e
ROWS, CHUNK = 100_000, 1_000


def cli(*args: str, key: str) -> list[str]:
    return [sys.executable, "-m", "aiart.cli", *args, "--url", GATEWAY, "--key", key]


@pytest.fixture(scope="module")
def deployer(run_id: str) -> Iterator[str]:
    name = f"t{run_id}-batch"
    made = subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "create", name,
                           "--role", "deployer"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    yield made.stdout.strip()
    subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", name],
                   capture_output=True, timeout=60)


@pytest.fixture
def job_configs(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Models whose jobs' configs go when the test ends (their results stay
    in the buckets, which the store fixture removes)."""
    owners: list[str] = []
    yield owners
    for model in owners:
        for config in engine.configs.list(filters={"label": f"aiart.job.model={model}"}):
            config.remove()


def test_a_job_over_100k_rows_survives_a_killed_task_and_scores_as_the_model_does(
        models: Models, engine: docker.DockerClient, iris_pickle: bytes,
        store: ObjectStore, deployer: str, job_configs: list[str],  # noqa: F811
        tmp_path: Path) -> None:
    model = models.name("batch")
    job_configs.append(model)
    bucket = f"aiart-{model}"
    config = models.declare(model, "1", iris_pickle)
    rows = np.random.default_rng(7).uniform(0, 8, (ROWS, 4)).round(3)
    text = io.StringIO()
    np.savetxt(text, rows, delimiter=",", fmt="%.3f", header="a,b,c,d", comments="")
    data = text.getvalue().encode()
    (tmp_path / "rows.csv").write_bytes(data)
    put = subprocess.run([sys.executable, "-m", "aiart.cli", "inputs", "put", model,
                          str(tmp_path / "rows.csv"), "--prefix", "inputs/day1"],
                         capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    assert put.stdout.strip() == f"s3://{bucket}/inputs/day1/"
    models.wait_status(config, "Ready", timeout=300)

    running = subprocess.Popen(
        cli("batch", "run", model, f"s3://{bucket}/inputs/day1/", "--chunk-rows", str(CHUNK),
            key=deployer), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def declared() -> list[Any]:
            if running.poll() is not None:
                raise AssertionError(f"aiart batch run ended: {running.communicate()}")
            return list(engine.configs.list(filters={"label": f"aiart.job.model={model}"}))

        [job] = wait_for(declared, 60, "the job's config")
        job_id = job.attrs["Spec"]["Labels"]["aiart.job"]

        def chunks_done() -> int:
            return len(anyio.run(store.list, bucket, f"jobs/{job_id}/chunks/"))

        # Its image is built first (the model's and the job's layer); then it
        # scores. Killed once a few chunks are written, well before the end.
        wait_for(lambda: chunks_done() >= 5, 300, "five chunks", every=0.05)
        [container] = engine.containers.list(
            filters={"label": f"com.docker.swarm.service.name=aiart-job-{job_id}"})
        container.kill()
        done_at_kill = chunks_done()
        assert done_at_kill < ROWS // CHUNK, "the job ended before it could be killed"
        out, err = running.communicate(timeout=300)
    finally:
        running.kill()
    assert running.returncode == 0, err
    assert out.strip() == f"s3://{bucket}/jobs/{job_id}/manifest.json"
    assert f"{ROWS}/{ROWS} rows" in err and "Succeeded" in err, err  # the CLI's progress

    labels = engine.configs.get(job.id).attrs["Spec"]["Labels"]
    assert labels["aiart.status"] == "Succeeded" and labels["aiart.job.version"] == "1"
    assert labels["aiart.status.rows-done"] == str(ROWS)
    manifest = json.loads(anyio.run(store.get, bucket, f"jobs/{job_id}/manifest.json"))
    assert manifest["rows"] == ROWS and manifest["model"] == model
    assert manifest["resumedChunks"] >= done_at_kill  # what was done before was not redone
    assert manifest["modelDigest"].startswith("sha256:")
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    # The service is gone once the job ended; the results stay.
    assert not engine.services.list(filters={"label": f"aiart.job={job_id}"})

    scored: list[dict[str, Any]] = []
    for output in manifest["outputs"]:
        scored += [json.loads(line) for line in
                   anyio.run(store.get, bucket, output["key"]).splitlines()]
    assert [r["index"] for r in scored] == list(range(ROWS))
    estimator = pickle.loads(iris_pickle)
    assert [r["outputs"]["predict"] for r in scored] == estimator.predict(rows).tolist()
    np.testing.assert_allclose([r["outputs"]["predict_proba"] for r in scored],
                               estimator.predict_proba(rows), rtol=1e-9)


def test_a_job_that_cannot_run_says_why(
        models: Models, engine: docker.DockerClient, deployer: str,
        job_configs: list[str]) -> None:
    model = models.name("nojob")
    job_configs.append(model)
    # Through the API: refused before anything is declared.
    refused = subprocess.run(cli("batch", "run", model, f"s3://aiart-{model}/in/", key=deployer),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"no model '{model}'" in refused.stderr
    elsewhere = subprocess.run(cli("batch", "run", model, "s3://datasets/in/", key=deployer),
                               capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode == 1 and "not in model" in elsewhere.stderr
    # A deployer of another model may not run a job on this one (with its keys).
    name = f"t{models.run_id}-other-deployer"
    other = subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "create", name, "--role",
                            "deployer", "--model", "other"], capture_output=True, text=True,
                           timeout=60).stdout.strip()
    assert other.startswith("aiart_"), "the other model's key was not made"
    try:
        refused = subprocess.run(cli("batch", "run", model, f"s3://aiart-{model}/in/", key=other),
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
    finally:
        subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", name],
                       capture_output=True, timeout=60)
    # A config made by hand, as a stack would: the operator marks it Invalid.
    name = f"aiart-job-{model}-by-hand"
    engine.configs.create(name=name, data=f"model: {model}\ninput: s3://aiart-{model}/in/\n"
                          .encode(), labels={"aiart.job": f"{model}-by-hand",
                                             "aiart.job.model": model})
    labels = wait_for(lambda: (lambda found: found if found.get("aiart.status") else None)(
        engine.configs.get(name).attrs["Spec"]["Labels"]), 60, "the job's status")
    assert labels["aiart.status"] == "Invalid"
    assert f"no model {model} is declared" in labels["aiart.status.message"]
