"""A batch job's passes (control/jobs.py) against the fake engine and store:
started once on the serving version's image with the job's layer, its
progress on its labels, ended and removed once, never started twice."""

from __future__ import annotations

import json

import pytest
from aiart.control.deps import Deps
from aiart.control.jobs import reconcile_job
from aiart.core import jobs
from aiart.core import labels as L
from aiart.core.objects import ServiceObject, TaskState
from aiart.core.settings import OperatorSettings
from aiart_runtime.settings import BATCH_REFUSED_EXIT, BatchJob

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway, FakeStore, tiny_model
from tests.unit.control.test_reconcile_store import declare, settle

JOB = b"model: iris\ninput: s3://aiart-iris/in/\nchunkRows: 100\n"


@pytest.fixture
def world() -> tuple[Deps, FakeCluster, FakeStore]:
    cluster, store = FakeCluster(), FakeStore()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings(public_url="http://gw:8080",
                                          model_store_endpoint="store-gateway:9000"),
                store=store, store_gateway_key=b"gateway-key-0123456789")
    cluster.add_config("m", tiny_model())
    return deps, cluster, store


def job(cluster: FakeCluster, job_id: str = "j1", data: bytes = JOB, model: str = "iris") -> str:
    cluster.add_config(jobs.config_name(job_id), data, jobs.job_labels(job_id, model, "me"))
    return jobs.config_name(job_id)


async def started(deps: Deps, cluster: FakeCluster) -> tuple[str, ServiceObject]:
    """Job j1 running on iris version 1: its config's name, and its service."""
    declare(cluster, "iris", "1", "config://m")
    await settle(deps, "iris")
    name = job(cluster)
    await reconcile_job(deps, "j1")
    [service] = await cluster.list_job_services()
    return name, service


async def test_a_job_runs_on_the_serving_version_and_ends_once(world) -> None:
    deps, cluster, store = world
    declare(cluster, "iris", "1", "config://m")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    name = job(cluster)

    assert (await reconcile_job(deps, "j1")).requeue_after is not None
    [service] = await cluster.list_job_services()
    # Not a version: the model's own list does not hold it.
    assert [s.name for s in await cluster.list_services("iris")] == ["aiart-iris-1"]
    assert cluster.status(name) == "Running"
    assert cluster.config(name).labels[L.JOB_VERSION] == "1"
    version_image = (await cluster.list_services("iris"))[0].labels[L.IMAGE_TAG]
    assert deps.builder.built[-1].startswith(f"{version_image}-batch-")  # type: ignore[attr-defined]
    env = dict(e.split("=", 1) for e in service.spec["TaskTemplate"]["ContainerSpec"]["Env"])
    assert BatchJob.from_json(env["AIART_BATCH_JOB"]).inputs == "in/"
    assert BatchJob.from_json(env["AIART_BATCH_JOB"]).chunk_rows == 100

    # Progress from the bucket onto the labels; a pass more starts nothing new.
    await store.ensure_bucket("aiart-iris")
    await store.put("aiart-iris", "jobs/j1/progress.json",
                    json.dumps({"rowsDone": 300, "rowsKnown": 1000, "files": 1}).encode())
    await reconcile_job(deps, "j1")
    labels = cluster.config(name).labels
    assert (labels[L.STATUS_ROWS_DONE], labels[L.STATUS_ROWS_KNOWN]) == ("300", "1000")
    assert len(await cluster.list_job_services()) == 1

    await store.put("aiart-iris", "jobs/j1/manifest.json",
                    json.dumps({"rows": 1000, "resumedChunks": 3}).encode())
    cluster.tasks[service.name] = [TaskState("failed", 137, "killed"),
                                   TaskState("complete", 0, "")]
    assert (await reconcile_job(deps, "j1")).requeue_after is None
    assert cluster.status(name) == "Succeeded"
    assert "1000 rows scored (3 chunks" in cluster.config(name).labels[L.STATUS_MESSAGE]
    assert await cluster.list_job_services() == []
    # Ended: never started again, whatever comes.
    await reconcile_job(deps, "j1")
    assert await cluster.list_job_services() == []


async def test_a_job_keeps_its_version_when_another_takes_over(world) -> None:
    deps, cluster, _ = world
    name, service = await started(deps, cluster)
    # Its task lost and the service with it (a node gone, say), while version
    # 2 became the serving one: it starts again on version 1.
    await cluster.remove_service(service)
    declare(cluster, "iris", "2", "config://m")
    await settle(deps, "iris")
    await reconcile_job(deps, "j1")
    [service] = await cluster.list_job_services()
    assert service.labels[L.JOB_VERSION] == "1" == cluster.config(name).labels[L.JOB_VERSION]


async def test_a_refused_job_fails_at_once_and_a_removed_one_stops(world) -> None:
    deps, cluster, _ = world
    name, service = await started(deps, cluster)
    cluster.tasks[service.name] = [TaskState("failed", BATCH_REFUSED_EXIT, ""),
                                   TaskState("ready", None, "")]
    await reconcile_job(deps, "j1")
    assert cluster.status(name) == "Failed"
    assert "Traceback: boom" in cluster.config(name).labels[L.STATUS_MESSAGE]  # its log
    assert await cluster.list_job_services() == []

    job(cluster, "j2")
    await reconcile_job(deps, "j2")
    assert len(await cluster.list_job_services()) == 1
    cluster.remove_config(jobs.config_name("j2"))
    await reconcile_job(deps, "j2")
    assert await cluster.list_job_services() == []


async def test_what_cannot_run_says_why(world) -> None:
    deps, cluster, _ = world
    for job_id, data, model, words in (
            ("j1", b"model: iris\ninput: s3://aiart-other/in/", "iris", "not in model iris"),
            ("j2", JOB, "iris", "no model iris is declared"),
            ("j3", JOB, "other", "must name the job's model iris")):
        name = job(cluster, job_id, data, model)
        assert (await reconcile_job(deps, job_id)).requeue_after is None
        assert cluster.status(name) == "Invalid"
        assert words in cluster.config(name).labels[L.STATUS_MESSAGE]
    # A model declared but not served yet: the job waits for it.
    declare(cluster, "iris", "1", "config://m")
    name = job(cluster, "j4")
    assert (await reconcile_job(deps, "j4")).requeue_after is not None
    assert cluster.status(name) == "Pending"
    assert await cluster.list_job_services() == []
