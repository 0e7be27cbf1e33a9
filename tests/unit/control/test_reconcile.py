"""The reconcile loop against in-memory fakes: idempotence, bad input,
recovery, version hand-over, garbage collection."""

from __future__ import annotations

import hashlib
import json

import pytest
from aiart.auth.access import gateway_token, probe_token
from aiart.control.deps import Deps
from aiart.control.reconcile import POLL_SECONDS, ROUTE_POLL_SECONDS, reconcile_model
from aiart.core import labels as L
from aiart.core.errors import PermanentError, TransientError
from aiart.core.render import GATEWAY_HEADER, carries_current_route
from aiart.core.settings import OperatorSettings

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway, manifest_yaml, tiny_model


@pytest.fixture
def world() -> tuple[Deps, FakeCluster, FakeBuilder, FakeGateway]:
    cluster = FakeCluster()
    builder = FakeBuilder()
    gateway = FakeGateway(cluster)
    deps = Deps(cluster=cluster, builder=builder, gateway=gateway,
                settings=OperatorSettings(public_url="http://gw:8080"))
    return deps, cluster, builder, gateway


async def settle(deps: Deps, model: str, passes: int = 8) -> None:
    for _ in range(passes):
        outcome = await reconcile_model(deps, model)
        if outcome.requeue_after is None and outcome.transient is None:
            return


def declare(cluster: FakeCluster, name: str, version: str, artifact: str | None = None,
            **extra: str) -> str:
    artifact = artifact or f"{name}-model-{version}"
    if cluster.configs and any(c.name == artifact for c in cluster.configs.values()):
        pass
    elif artifact is not None:
        cluster.add_config(artifact, tiny_model())
    cfg = f"{name}-{version}"
    cluster.add_config(cfg, manifest_yaml(name, version, artifact, **extra), {L.MODEL: name})
    return cfg


async def test_an_image_the_registry_holds_under_the_recipes_tag_is_not_built(world) -> None:
    # A model package imported here put the image it was built as into the
    # registry, under the tag this operator would build: it runs that one.
    deps, cluster, builder, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    tag = cluster.config("iris-1").labels[L.STATUS_IMAGE].partition("@")[0]
    assert builder.built == [tag]
    declare(cluster, "iris", "2")
    await settle(deps, "iris")
    assert any(":2-" in t for t in builder.built)  # unknown to the registry: built

    cluster.services.clear()
    for config in list(cluster.configs.values()):
        if config.labels.get(L.MODEL) == "iris":
            cluster.remove_config(config.name)
    builder.built.clear()
    builder.pushed.clear()
    cluster.registry_digests[tag] = f"localhost:5000/aiart/iris@sha256:{'a' * 64}"
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    config = cluster.config("iris-1")
    assert config.labels[L.STATUS] == "Ready"
    assert builder.built == [] and builder.pushed == [] and builder.runtimes
    (service,) = cluster.services.values()
    assert "@sha256:" in service.spec["TaskTemplate"]["ContainerSpec"]["Image"]


async def test_an_imported_version_runs_its_packages_image_whatever_this_site_would_build(
        world) -> None:
    # Exported by another aiart version: its recipe's tag is not this one's.
    deps, cluster, builder, _ = world
    pinned = f"sha256:{'c' * 64}"
    origin = json.dumps({"imageTag": "1-elsewhere", "imageDigest": pinned})
    cluster.add_config("iris-model-1", tiny_model())
    cluster.add_config("iris-1", manifest_yaml("iris", "1", "iris-model-1"),
                       {L.MODEL: "iris", L.PACKAGE: origin})
    # The image is not in the registry (removed since the import): retried,
    # and the status says what would mend it.
    await reconcile_model(deps, "iris")
    config = cluster.config("iris-1")
    assert config.labels[L.STATUS] == "Pending", config.labels
    assert "import the package again" in config.labels[L.STATUS_MESSAGE]
    assert not cluster.services
    repository = "localhost:5000/aiart/iris"
    cluster.registry_digests[f"{repository}@{pinned}"] = f"{repository}@{pinned}"
    await settle(deps, "iris")
    config = cluster.config("iris-1")
    assert config.labels[L.STATUS] == "Ready", config.labels
    assert builder.built == [] and builder.pushed == [] and builder.runtimes == []
    (service,) = cluster.services.values()
    assert service.spec["TaskTemplate"]["ContainerSpec"]["Image"] == f"{repository}@{pinned}"
    assert service.labels[L.IMAGE_TAG] == f"{repository}:1-elsewhere"
    # A label that names no image (or not one): built as any version is.
    cluster.add_config("iris-2", manifest_yaml("iris", "2", "iris-model-1"),
                       {L.MODEL: "iris", L.PACKAGE: json.dumps({"imageDigest": "latest"})})
    await settle(deps, "iris")
    assert [t for t in builder.built if ":2-" in t]


async def test_a_declared_model_becomes_ready_and_a_second_pass_changes_nothing(world) -> None:
    deps, cluster, builder, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    config = cluster.config("iris-1")
    assert config.labels[L.STATUS] == "Ready"
    assert config.labels[L.STATUS_ENDPOINT] == "http://gw:8080/models/iris"
    assert config.labels[L.STATUS_IMAGE].startswith("localhost:5000/aiart/iris:1-")
    assert [s.name for s in cluster.services.values()] == ["aiart-iris-1"]
    assert len(builder.built) == 1

    before = list(cluster.calls)
    for _ in range(3):
        outcome = await reconcile_model(deps, "iris")
        assert outcome.requeue_after is None
    assert cluster.calls == before, "a pass over a settled model must not act"


async def test_a_version_declared_again_is_ready_only_once_a_task_of_its_own_runs(
        world) -> None:
    # Removed and declared again at once: the old service's task, draining,
    # still answers the gateway's probe; the new one is not Ready for that.
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    cluster.starting_services.add("aiart-iris-1")
    cluster.remove_config("iris-1")
    cluster.services.clear()
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    labels = cluster.config("iris-1").labels
    assert labels[L.STATUS] == "Deploying", labels
    assert labels[L.STATUS_MESSAGE].startswith("0 of 1 replicas running"), labels
    cluster.starting_services.clear()
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"


async def test_a_running_task_the_gateway_does_not_route_yet_is_looked_at_soon(world) -> None:
    # Its route comes within about a second: the next look is sooner than a
    # pass's usual second, so that Ready follows the route closely; so is
    # the look at a task whose container waits for its first health check
    # (it runs within a second). A task still pulling its image is looked
    # at at the usual pace.
    deps, cluster, _, gateway = world
    declare(cluster, "iris", "1")
    cluster.starting_services.add("aiart-iris-1")
    outcome = await reconcile_model(deps, "iris")
    assert outcome.requeue_after == POLL_SECONDS
    outcome = await reconcile_model(deps, "iris")
    assert cluster.status("iris-1") == "Deploying"
    assert outcome.requeue_after == POLL_SECONDS, "nothing runs yet: the usual pace"
    cluster.starting_services.clear()
    cluster.started_services.add("aiart-iris-1")
    outcome = await reconcile_model(deps, "iris")
    assert cluster.status("iris-1") == "Deploying"
    assert outcome.requeue_after == ROUTE_POLL_SECONDS, "a started container: soon"
    cluster.started_services.clear()
    gateway.unrouted.add(("iris", "1"))
    outcome = await reconcile_model(deps, "iris")
    message = cluster.config("iris-1").labels[L.STATUS_MESSAGE]
    assert message.startswith("1 of 1 replicas running; waiting for the gateway"), message
    assert outcome.requeue_after == ROUTE_POLL_SECONDS < POLL_SECONDS
    gateway.unrouted.clear()
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"


async def test_invalid_manifest_is_reported_and_fixing_it_recovers(world) -> None:
    deps, cluster, _, _ = world
    cluster.add_config("bad-1", b"apiVersion: aiart/v1\nkind: Model\nmetadata: {name: bad}\n",
                       {L.MODEL: "bad"})
    declare(cluster, "good", "1")
    await settle(deps, "bad")
    await settle(deps, "good")
    assert cluster.status("bad-1") == "Invalid"
    assert "metadata.version: required field is missing" in cluster.config("bad-1").labels[
        L.STATUS_MESSAGE]
    assert cluster.status("good-1") == "Ready"
    cluster.remove_config("bad-1")
    declare(cluster, "bad", "1")
    await settle(deps, "bad")
    assert cluster.status("bad-1") == "Ready"


async def test_label_must_match_the_manifest_name(world) -> None:
    deps, cluster, _, _ = world
    cluster.add_config("a-model", tiny_model())
    cluster.add_config("x", manifest_yaml("other", "1", "a-model"), {L.MODEL: "iris"})
    await settle(deps, "iris")
    assert cluster.status("x") == "Invalid"
    assert "must equal metadata.name" in cluster.config("x").labels[L.STATUS_MESSAGE]
    assert not cluster.services


async def test_missing_artifact_fails_then_recovers_when_it_appears(world) -> None:
    deps, cluster, _, _ = world
    cluster.add_config("iris-1", manifest_yaml("iris", "1", "iris-model-1"), {L.MODEL: "iris"})
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    assert "docker config create iris-model-1" in cluster.config("iris-1").labels[L.STATUS_MESSAGE]
    cluster.add_config("iris-model-1", tiny_model())
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"


@pytest.mark.parametrize(
    ("artifact", "expected"),
    [(b"not a pickle at all", "not a pickle"), (b"\x1f\x8b\x08garbage", "does not decompress")],
)
async def test_corrupt_artifact_fails_clearly(world, artifact: bytes, expected: str) -> None:
    deps, cluster, builder, _ = world
    cluster.add_config("iris-model-1", artifact)
    cluster.add_config("iris-1", manifest_yaml("iris", "1", "iris-model-1"), {L.MODEL: "iris"})
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    assert expected in cluster.config("iris-1").labels[L.STATUS_MESSAGE]
    assert not builder.built


async def test_sha256_mismatch_is_refused(world) -> None:
    deps, cluster, _, _ = world
    cluster.add_config("m", tiny_model())
    cluster.add_config("iris-1", manifest_yaml("iris", "1", "m", ).replace(
        b"uri: 'config://m'", b"uri: 'config://m', sha256: '" + b"0" * 64 + b"'"),
        {L.MODEL: "iris"})
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    assert "the manifest expects" in cluster.config("iris-1").labels[L.STATUS_MESSAGE]


async def test_a_failed_build_is_not_retried_until_the_input_changes(world) -> None:
    deps, cluster, builder, _ = world
    builder.fail_with = PermanentError("image build failed: the model does not load")
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    calls = list(cluster.calls)
    builder.fail_with = None
    await settle(deps, "iris")
    assert cluster.calls == calls, "the same failed input must wait for the user"
    cluster.remove_config("iris-1")
    declare(cluster, "iris", "1", artifact="iris-model-1")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"


async def test_transient_failures_keep_the_phase_and_say_what_is_retried(world) -> None:
    deps, cluster, builder, _ = world
    builder.fail_with = TransientError("push to the registry failed: connection refused")
    declare(cluster, "iris", "1")
    outcome = await reconcile_model(deps, "iris")
    assert outcome.transient is not None
    config = cluster.config("iris-1")
    assert config.labels[L.STATUS] == "Building"
    assert "retrying" in config.labels[L.STATUS_MESSAGE]
    assert "connection refused" in config.labels[L.STATUS_MESSAGE]
    builder.fail_with = None
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"


async def test_a_crashing_model_is_failed_with_its_logs(world) -> None:
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1")
    cluster.failing_services.add("aiart-iris-1")
    await settle(deps, "iris")
    message = cluster.config("iris-1").labels[L.STATUS_MESSAGE]
    assert cluster.status("iris-1") == "Failed"
    assert "keeps failing" in message and "Traceback: boom" in message


async def test_duplicate_version_the_later_config_is_invalid(world) -> None:
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1")
    cluster.add_config("iris-1-again", manifest_yaml("iris", "1", "iris-model-1"),
                       {L.MODEL: "iris"})
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    assert cluster.status("iris-1-again") == "Invalid"
    assert "already declared by config iris-1" in cluster.config("iris-1-again").labels[
        L.STATUS_MESSAGE]
    assert len(cluster.services) == 1


async def test_removing_the_config_removes_the_service(world) -> None:
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    cluster.remove_config("iris-1")
    await settle(deps, "iris")
    assert not cluster.services


async def test_new_version_takes_the_route_only_once_ready_and_never_leaves_a_gap(world) -> None:
    deps, cluster, _, gateway = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    declare(cluster, "iris", "2")
    served, old_status = [], []
    for _ in range(10):
        outcome = await reconcile_model(deps, "iris")
        served.append(await gateway.current_version("iris", ["1", "2"]))
        old_status.append(cluster.status("iris-1"))
        if outcome.requeue_after is None:
            break
    assert None not in served, "the unversioned route must always have a server"
    # Giving up its routes restarts nothing: the old version stays Ready throughout.
    assert set(old_status) == {"Ready"}, old_status
    assert served[-1] == "2"
    routed = {s.labels[L.VERSION] for s in cluster.services.values()
              if carries_current_route(dict(s.labels))}
    assert routed == {"2"}
    assert cluster.config("iris-2").labels[L.STATUS_ENDPOINT] == "http://gw:8080/models/iris"
    assert cluster.config("iris-1").labels[L.STATUS_ENDPOINT].endswith("/models/iris/versions/1")
    assert cluster.status("iris-1") == "Ready"


async def test_a_broken_new_version_leaves_the_old_one_routed(world) -> None:
    deps, cluster, _, gateway = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    declare(cluster, "iris", "2")
    cluster.failing_services.add("aiart-iris-2")
    await settle(deps, "iris")
    assert cluster.status("iris-2") == "Failed"
    assert await gateway.current_version("iris", ["1", "2"]) == "1"


async def test_orphaned_services_are_removed(world) -> None:
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    await cluster.create_service({"Name": "aiart-iris-9", "Labels": {
        L.MANAGED_BY: "aiart", L.MODEL: "iris", L.VERSION: "9", L.OWNER: "gone"},
        "Mode": {"Replicated": {"Replicas": 1}}})
    await settle(deps, "iris")
    assert sorted(s.name for s in cluster.services.values()) == ["aiart-iris-1"]


async def test_scaling_to_zero_is_pending_not_ready(world) -> None:
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1", replicas="0")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Pending"


async def test_onnx_models_get_the_onnx_runtime_and_other_files_fail(world) -> None:
    deps, cluster, builder, _ = world
    cluster.add_config("wrong", tiny_model())
    cluster.add_config("bad-1", manifest_yaml("bad", "1", "wrong", runtime="onnx"),
                       {L.MODEL: "bad"})
    await settle(deps, "bad")
    assert cluster.status("bad-1") == "Failed"
    assert "not an ONNX model" in cluster.config("bad-1").labels[L.STATUS_MESSAGE]
    cluster.add_config("net", b"\x08\x08" + b"\x00" * 64)  # an ir_version field first
    cluster.add_config("net-1", manifest_yaml("net", "1", "net", runtime="onnx"),
                       {L.MODEL: "net"})
    await settle(deps, "net")
    assert cluster.status("net-1") == "Ready"
    assert builder.runtimes[-1].startswith("aiart/runtime-onnx:")


def byo_manifest(name: str, image: str) -> bytes:
    return (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '1'}}\n"
            f"spec:\n  runtime: image\n  image: {image}\n  port: 9000\n").encode()


async def test_a_ready_image_is_deployed_as_is_and_checked(world) -> None:
    deps, cluster, builder, gateway = world
    cluster.add_config("byo-1", byo_manifest("byo", "team/good:1"), {L.MODEL: "byo"})
    cluster.add_config("bad-1", byo_manifest("bad", "team/bad:1"), {L.MODEL: "bad"})
    gateway.broken_images.add("team/bad:1")
    cluster.running_for = 2.0  # just started: the gateway may not route to it yet
    await settle(deps, "bad")
    assert cluster.status("bad-1") == "Deploying", "judged before the gateway could route"
    cluster.running_for = 60.0
    await settle(deps, "byo")
    await settle(deps, "bad")
    assert cluster.status("byo-1") == "Ready"
    assert not builder.built, "a ready image is never built"
    (byo,) = [s for s in cluster.services.values() if s.name == "aiart-byo-1"]
    assert byo.spec["TaskTemplate"]["ContainerSpec"]["Image"] == "team/good:1"
    assert byo.labels["traefik.http.services.aiart_byo_1.loadbalancer.server.port"] == "9000"
    assert cluster.status("bad-1") == "Failed"
    message = cluster.config("bad-1").labels[L.STATUS_MESSAGE]
    assert "does not honour the inference contract" in message and "404" in message
    # One that answered, then 404 everywhere (the gateway rebuilding its
    # routes): waiting for the gateway, never judged for the gateway's 404s.
    gateway.broken_images.add("team/good:1")
    await settle(deps, "byo")
    labels = cluster.config("byo-1").labels
    assert labels[L.STATUS] == "Deploying" and "waiting for the gateway" in labels[
        L.STATUS_MESSAGE], labels
    gateway.broken_images.discard("team/good:1")
    await settle(deps, "byo")
    assert cluster.status("byo-1") == "Ready"


async def test_a_ready_image_runs_by_the_digest_its_registry_gave_and_keeps_it(world) -> None:
    """Whoever pushes to a ready image's tag later does not change what the
    running service runs (as ``docker service create`` resolves an image)."""
    deps, cluster, _, _ = world
    first, moved = (f"registry.example:5000/team/good@sha256:{c * 64}" for c in "ab")
    cluster.registry_digests["registry.example:5000/team/good:1"] = first
    cluster.add_config("byo-1", byo_manifest("byo", "registry.example:5000/team/good:1"),
                       {L.MODEL: "byo"})
    await settle(deps, "byo")
    assert cluster.status("byo-1") == "Ready"
    (byo,) = cluster.services.values()
    assert byo.spec["TaskTemplate"]["ContainerSpec"]["Image"] == first
    assert byo.labels[L.IMAGE_TAG] == "registry.example:5000/team/good:1"
    # The tag moves; the next passes (a resync, a route change) keep the pin.
    cluster.registry_digests["registry.example:5000/team/good:1"] = moved
    cluster.add_config("byo-2", byo_manifest("byo", "team/other:1").replace(b"'1'", b"'2'"),
                       {L.MODEL: "byo"})
    await settle(deps, "byo")
    v1 = next(s for s in cluster.services.values() if s.labels[L.VERSION] == "1")
    assert v1.spec["TaskTemplate"]["ContainerSpec"]["Image"] == first
    # No registry knows the image (built on this node only): the tag, as is;
    # a manifest that names a digest keeps it.
    v2 = next(s for s in cluster.services.values() if s.labels[L.VERSION] == "2")
    assert v2.spec["TaskTemplate"]["ContainerSpec"]["Image"] == "team/other:1"
    cluster.add_config("dig-1", byo_manifest("dig", moved), {L.MODEL: "dig"})
    await settle(deps, "dig")
    (dig,) = [s for s in cluster.services.values() if s.labels[L.MODEL] == "dig"]
    assert dig.spec["TaskTemplate"]["ContainerSpec"]["Image"] == moved


async def test_python_code_gets_a_runtime_per_requirement_set(world) -> None:
    deps, cluster, builder, _ = world
    cluster.add_config("code", b"def predict(inputs):\n    return 1\n")
    cluster.add_config("bad-code", b"def predict(:\n")
    for name, artifact in (("a", "code"), ("b", "code"), ("c", "bad-code")):
        cluster.add_config(f"{name}-1", manifest_yaml(name, "1", artifact, runtime="python",
                                                      requirements='["six==1.17.0"]'),
                           {L.MODEL: name})
        await settle(deps, name)
    assert cluster.status("a-1") == cluster.status("b-1") == "Ready"
    assert builder.runtimes[0] == builder.runtimes[1]
    assert builder.runtimes[0].startswith("aiart/runtime-python:req-")
    assert cluster.status("c-1") == "Failed"
    assert "not valid Python source" in cluster.config("c-1").labels[L.STATUS_MESSAGE]


async def test_h2o_models_use_the_prebuilt_runtime(world) -> None:
    deps, cluster, builder, _ = world
    cluster.add_config("mojo", b"PK\x03\x04" + b"\x00" * 64)
    cluster.add_config("m-1", manifest_yaml("m", "1", "mojo", runtime="h2o"), {L.MODEL: "m"})
    await settle(deps, "m")
    assert cluster.status("m-1") == "Failed"
    assert "AIART_H2O_RUNTIME_IMAGE" in cluster.config("m-1").labels[L.STATUS_MESSAGE]

    configured = Deps(cluster=cluster, builder=builder, gateway=deps.gateway,
                      settings=OperatorSettings(h2o_runtime_image="aiart/runtime-h2o:x"))
    cluster.add_config("n-1", manifest_yaml("n", "1", "mojo", runtime="h2o"), {L.MODEL: "n"})
    await settle(configured, "n")
    assert cluster.status("n-1") == "Ready"
    assert builder.runtimes == [], "the h2o runtime is prebuilt, never built by the operator"
    cluster.add_config("o-1", manifest_yaml("o", "1", "n-1", runtime="h2o"), {L.MODEL: "o"})
    await settle(configured, "o")
    assert "not an H2O MOJO" in cluster.config("o-1").labels[L.STATUS_MESSAGE]


async def test_built_images_run_by_digest_and_stay_pinned_through_route_changes(world) -> None:
    """A push to the same tag later must not change what a service runs; an
    operator on another manager (no digest at hand) keeps the live pin."""
    deps, cluster, _, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    (first,) = cluster.services.values()
    pinned = first.spec["TaskTemplate"]["ContainerSpec"]["Image"]
    tag = cluster.config("iris-1").labels[L.STATUS_IMAGE]
    assert pinned == f"{tag.rpartition(':')[0]}@sha256:{'0' * 64}"
    assert first.labels[L.IMAGE_TAG] == tag

    async def no_digest(_: str) -> str:
        return "sha256:local-id-only"

    cluster.image_digest = no_digest  # type: ignore[method-assign]
    declare(cluster, "iris", "2")  # version 1 gives up its current route: labels only
    await settle(deps, "iris")
    v1 = next(s for s in cluster.services.values() if s.labels[L.VERSION] == "1")
    assert not carries_current_route(dict(v1.labels))
    assert v1.spec["TaskTemplate"]["ContainerSpec"]["Image"] == pinned


async def test_each_version_and_its_routes_share_a_gateway_token_of_its_own(world) -> None:
    deps, cluster, builder, gateway = world
    keyed = Deps(cluster=cluster, builder=builder, gateway=gateway, settings=deps.settings,
                 probe_key=b"probe-key")
    declare(cluster, "m", "1")
    declare(cluster, "m", "2")
    await settle(keyed, "m")
    for version in ("1", "2"):
        (service,) = [s for s in cluster.services.values() if s.name == f"aiart-m-{version}"]
        token = gateway_token(b"probe-key", "m", version)
        env = service.spec["TaskTemplate"]["ContainerSpec"]["Env"]
        assert f"AIART_GATEWAY_TOKEN={token}" in env
        assert [v for k, v in service.labels.items()
                if k.endswith(f"customrequestheaders.{GATEWAY_HEADER}")] == [token]
    # Without the key (no probe key mounted, or AIART_GATEWAY_ONLY off): none.
    declare(cluster, "n", "1")
    await settle(deps, "n")
    (plain,) = [s for s in cluster.services.values() if s.name == "aiart-n-1"]
    assert not any(e.startswith("AIART_GATEWAY_TOKEN=")
                   for e in plain.spec["TaskTemplate"]["ContainerSpec"]["Env"])
    # Closed by default: the gateway's key plugin lets in this version's
    # probe token, known to it by its digest only.
    (service,) = [s for s in cluster.services.values() if s.name == "aiart-m-2"]
    assert [v for k, v in service.labels.items() if k.endswith(".probeDigest")] == [
        hashlib.sha256(probe_token(b"probe-key", "m", "2").encode()).hexdigest()]
    assert not any(k.endswith(".probeDigest") for k in plain.labels)
