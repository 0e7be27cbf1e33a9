"""Batch jobs' declarations, service and outcome (core/jobs.py, render_job):
what a job may read, how Swarm runs it, and what its tasks mean."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiart.build.recipes import BATCH_REQUIREMENTS, SERVER_REQUIREMENTS, BatchRecipe
from aiart.core import jobs
from aiart.core import labels as L
from aiart.core.jobs import JobError, JobPhase
from aiart.core.objects import TaskState
from aiart.core.render import StoreAccess, render_job
from aiart.core.settings import OperatorSettings
from aiart.core.spec import parse_manifest
from aiart_runtime.settings import BATCH_REFUSED_EXIT, BatchJob

MANIFEST = parse_manifest(b"""apiVersion: aiart/v1
kind: Model
metadata: {name: iris, version: "1"}
spec:
  runtime: sklearn
  artifact: {uri: config://iris-model}
  resources: {limits: {cpus: 1, memory: 512Mi}}
""")


def test_a_job_reads_its_models_bucket_only() -> None:
    spec = jobs.parse_job(b"model: iris\nversion: 2\ninput: s3://aiart-iris/in/day1/\n")
    assert (spec.model, spec.version, spec.prefix, spec.chunkRows) == (
        "iris", "2", "in/day1/", 10_000)
    for text, problem in (
            (b"model: iris\ninput: s3://aiart-other/in/", "not in model iris's bucket"),
            (b"model: iris\ninput: /data/in.csv", "not an s3:// address"),
            (b"model: iris\ninput: s3://aiart-iris/jobs/x/", "under jobs/"),
            (b"model: iris\ninput: s3://aiart-iris/a\nchunkRows: 0", "chunkRows"),
            (b"model: Iris!\ninput: s3://aiart-iris/a", "not a model name"),
            (b"model: iris\ninput: s3://aiart-iris/a\nreplicas: 3", "replicas"),
            (b"- a list", "a mapping"),
            (b"model: [unclosed", "not YAML")):
        with pytest.raises(JobError, match=problem):
            jobs.parse_job(text)


def test_job_ids_fit_a_service_name() -> None:
    now = datetime(2026, 12, 6, 2, 30, 5, tzinfo=UTC)
    for model in ("iris", "a" * 63):
        job_id = jobs.new_job_id(model, now)
        assert jobs.JOB_ID.match(job_id), job_id
        assert "20261206-023005" in job_id
        assert len(jobs.service_name(job_id)) <= 63


def test_a_job_runs_once_as_a_hardened_swarm_job_with_the_models_keys() -> None:
    job = BatchJob(id="iris-1", inputs="in/", chunk_rows=500, model_digest="sha256:ab")
    spec = render_job(
        job_id="iris-1", model="iris", version="1", image="reg/aiart/iris@sha256:cd", job=job,
        manifest=MANIFEST, settings=OperatorSettings(), config_id="cfg1",
        store=StoreAccess(endpoint="store-gateway:9000", secure=False,
                          access_key_secret=("s1", "n1"), secret_key_secret=("s2", "n2")))
    assert spec["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    template = spec["TaskTemplate"]
    # A killed task is started again (and resumes); not for ever.
    assert template["RestartPolicy"]["Condition"] == "on-failure"
    assert template["RestartPolicy"]["MaxAttempts"] == jobs.RESTARTS
    container = template["ContainerSpec"]
    env = dict(item.split("=", 1) for item in container["Env"])
    assert BatchJob.from_json(env["AIART_BATCH_JOB"]) == job
    assert env["AIART_STORE_BUCKET"] == "aiart-iris"
    assert env["AIART_STORE_ACCESS_KEY_FILE"] == "/run/secrets/aiart-store-access-key"
    assert [s["SecretID"] for s in container["Secrets"]] == ["s1", "s2"]
    assert container["Command"][-2:] == ["batch", "/model"]
    assert container["User"] == "10001:10001" and container["ReadOnly"]
    assert container["CapabilityDrop"] == ["ALL"] and "Healthcheck" not in container
    assert template["Resources"]["Limits"] == {"NanoCPUs": 1_000_000_000,
                                              "MemoryBytes": 512 * 1024**2}
    assert spec["Labels"][L.JOB] == "iris-1" and L.MODEL not in spec["Labels"]


def test_pyarrow_is_in_job_images_not_serving_ones() -> None:
    assert not [r for r in SERVER_REQUIREMENTS if r.startswith("pyarrow")]
    recipe = BatchRecipe(model_image="reg/aiart/iris:1-abc", python_version="3.11")
    dockerfile = recipe.dockerfile()
    assert "FROM reg/aiart/iris:1-abc" in dockerfile
    assert f"'{BATCH_REQUIREMENTS[0]}'" in dockerfile and "--no-deps" in dockerfile
    assert recipe.tag.startswith("reg/aiart/iris:1-abc-batch-")
    assert recipe.tag != BatchRecipe(model_image="reg/aiart/iris:1-abd",
                                     python_version="3.11").tag


def task(state: str, exit_code: int | None = None, message: str = "") -> TaskState:
    return TaskState(state, exit_code, message)


@pytest.mark.parametrize(("tasks", "phase", "words"), [
    ([], JobPhase.RUNNING, "starting"),
    ([task("running")], JobPhase.RUNNING, "running"),
    ([task("failed", 137, "task: non-zero exit (137)"), task("running")], JobPhase.RUNNING,
     "started again"),
    ([task("failed", 137), task("complete", 0)], JobPhase.SUCCEEDED, "done"),
    ([task("failed", BATCH_REFUSED_EXIT), task("ready")], JobPhase.FAILED, "cannot succeed"),
    ([task("failed", 1)] * (jobs.RESTARTS + 1), JobPhase.FAILED, "tasks ended"),
    ([task("failed", 1)] * jobs.RESTARTS, JobPhase.RUNNING, "starting"),
])
def test_a_jobs_tasks_say_where_it_stands(tasks: list[TaskState], phase: JobPhase,
                                          words: str) -> None:
    found, message = jobs.outcome(tasks)
    assert found is phase and words in message


def test_status_replaces_the_old_and_keeps_the_rest() -> None:
    labels = {L.JOB: "j", L.STATUS: "Running", L.STATUS_ROWS_DONE: "5", "team": "crm"}
    out = jobs.status_labels(labels, JobPhase.SUCCEEDED, "x" * 2000, {L.STATUS_ROWS_DONE: "9"})
    assert out[L.STATUS] == "Succeeded" and out[L.STATUS_ROWS_DONE] == "9"
    assert out["team"] == "crm" and len(out[L.STATUS_MESSAGE]) == 1000
    assert json.dumps(out)  # plain strings only: Docker labels
