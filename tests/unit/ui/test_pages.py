"""The dashboard's pages over the API's in-memory doubles: signing in and
its cookies, what a page shows and offers each role, a revoked key sent
back to sign in, changes that need the dashboard's header, escaping; and
the API calls the pages' scripts make (charts, the playground)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiart.api.prometheus import GatewayPasser, PrometheusCharts
from aiart.auth.access import KEY_COOKIE, UI_HEADER, Role
from aiart.catalog.configs import DockerCatalog
from aiart.catalog.records import Deployment
from aiart.core import charts
from aiart.core import labels as L
from aiart.store.runs import upload_run
from aiart.ui.pages import ROUTES, safe_next

from tests.fakes import tiny_model
from tests.unit.api.test_api import MANIFEST, World, deploy
from tests.unit.api.test_keys_and_events import World as KeysWorld


class FakeCharts:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    async def model(self, model: str, minutes: int) -> dict[str, Any]:
        self.asked.append((model, minutes))
        return {"minutes": minutes, "step": 30, "total": 12, "start": 0.0, "end": 3600.0,
                "series": {"requests": [(1.0, 0.2)], "errors": [], "p50": [(1.0, None)],
                           "p99": [(1.0, 0.004)]}}


class Gateway:
    """The gateway as the API's passer meets it: what it was sent."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path.endswith("/infer"):
            return httpx.Response(200, json={"outputs": [{"name": "predict", "data": [0]}]})
        return httpx.Response(200, json={"inputs": [{"name": "input-0", "datatype": "FP64",
                                                     "shape": [-1, 4]}]})


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def world(gateway: Gateway) -> Iterator[World]:
    passer = GatewayPasser("http://traefik:81", transport=httpx.MockTransport(gateway.handle))
    w = World(pages=ROUTES, charts=FakeCharts(), passer=passer)
    with w.client:
        yield w


def sign_in(world: World, headers: Mapping[str, str], target: str = "/ui/") -> httpx.Response:
    return world.client.post("/ui/login", data={"key": headers["X-API-Key"], "next": target},
                             follow_redirects=False)


def test_signing_in_keeps_the_key_where_scripts_and_models_cannot_read_it(world: World) -> None:
    answer = sign_in(world, world.key(Role.VIEWER))
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookies = answer.headers.get_list("set-cookie")
    assert sorted(c.split("Path=")[1].split(";")[0] for c in cookies) == ["/api/v1", "/ui"]
    for cookie in cookies:
        assert cookie.startswith(f"{KEY_COOKIE}=aiart_")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    # Behind the gateway (HTTPS): only over HTTPS.
    world.client.cookies.clear()
    secure = world.client.post("/ui/login", data={"key": world.key(Role.VIEWER)["X-API-Key"]},
                               headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)
    assert all("Secure" in c for c in secure.headers.get_list("set-cookie"))


def test_a_wrong_key_is_refused_and_sets_nothing(world: World) -> None:
    answer = world.client.post("/ui/login", data={"key": "aiart_000000000000_" + "x" * 43})
    assert answer.status_code == 401 and "unknown or revoked" in answer.text
    assert "set-cookie" not in answer.headers
    # Another site's form may not sign a visitor in with a key of its choosing.
    forged = world.client.post("/ui/login", data={"key": world.key(Role.ADMIN)["X-API-Key"]},
                               headers={"Origin": "https://elsewhere.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    own = world.client.post("/ui/login", data={"key": world.key(Role.ADMIN)["X-API-Key"]},
                            headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert own.status_code == 303 and "set-cookie" in own.headers


@pytest.mark.parametrize("target", ["https://elsewhere.example/", "//elsewhere.example/ui/",
                                    "/api/v1/models", "/ui\\..\\x", "javascript:alert(1)"])
def test_after_signing_in_the_browser_goes_only_to_a_dashboard_page(target: str) -> None:
    assert safe_next(target) == "/ui/"
    assert safe_next("/ui/models/iris?x=1") == "/ui/models/iris?x=1"


def test_pages_show_what_the_api_shows_that_key(world: World) -> None:
    admin = world.key(Role.ADMIN)
    deploy(world, admin, artifact=tiny_model())
    deploy(world, admin, MANIFEST.replace(b"name: iris", b"name: wine"), tiny_model())
    world.served(**{L.STATUS: "Ready", L.STATUS_CURRENT: "true",
                    L.STATUS_ENDPOINT: "https://gw/models/iris"})
    # Not signed in: to the sign-in page, and back here after.
    away = world.client.get("/ui/models/iris", follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"].startswith("/ui/login?next=/ui/models/iris")
    sign_in(world, world.key(Role.VIEWER, "iris"))
    table = world.client.get("/ui/")
    assert table.status_code == 200
    assert 'data-model="iris"' in table.text and 'data-model="wine"' not in table.text
    assert "https://gw/models/iris" in table.text
    page = world.client.get("/ui/models/iris")
    assert page.status_code == 200 and "runtime: sklearn" in page.text  # the manifest
    refused = world.client.get("/ui/models/wine")
    assert refused.status_code == 403 and "may not do this on model &#39;wine&#39;" in refused.text
    # As the API: a key scoped elsewhere learns nothing of what exists.
    assert world.client.get("/ui/models/nope").status_code == 403
    # A viewer is offered no action.
    assert "data-remove" not in page.text and 'href="/ui/deploy"' not in page.text
    assert world.client.get("/ui/deploy").status_code == 403
    for name, value in (("Content-Security-Policy", "script-src 'self'"),
                        ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")):
        assert value in page.headers[name]


def test_a_deployer_is_offered_its_own_models_actions(world: World) -> None:
    deployer = world.key(Role.DEPLOYER, "iris")
    deploy(world, deployer, artifact=tiny_model())
    sign_in(world, deployer)
    page = world.client.get("/ui/models/iris").text
    assert 'data-remove="1"' in page and 'href="/ui/deploy"' in page
    assert 'href="/api/v1/models/iris/package?version=1">Export' in page
    deploy_page = world.client.get("/ui/deploy")
    assert deploy_page.status_code == 200
    assert 'id="import"' in deploy_page.text and 'data-action="/api/v1/packages"' in deploy_page.text
    # Taking a package unsigned is an admin's choice: only its page offers it.
    assert 'id="allow-unsigned"' not in deploy_page.text
    sign_in(world, world.key(Role.ADMIN))
    assert 'id="allow-unsigned"' in world.client.get("/ui/deploy").text


def test_a_revoked_key_is_sent_back_to_sign_in(world: World) -> None:
    viewer = world.key(Role.VIEWER)
    sign_in(world, viewer)
    assert world.client.get("/ui/").status_code == 200
    world.revoke(viewer)
    answer = world.client.get("/ui/", follow_redirects=False)
    assert answer.status_code == 303 and "unknown%20or%20revoked" in answer.headers["location"]
    assert world.client.get("/api/v1/models").status_code == 401


def test_a_change_needs_the_dashboards_header_besides_the_cookie(world: World) -> None:
    admin = world.key(Role.ADMIN)
    deploy(world, admin, artifact=tiny_model())
    sign_in(world, world.key(Role.DEPLOYER, "iris"))
    # The cookie alone reads...
    assert world.client.get("/api/v1/models/iris").status_code == 200
    # ...but changes nothing: another site's form could send it.
    assert world.client.delete("/api/v1/models/iris/versions/1").status_code == 401
    assert world.cluster.configs
    removed = world.client.delete("/api/v1/models/iris/versions/1", headers={UI_HEADER: "1"})
    assert removed.status_code == 200, removed.text
    # Signed out: the cookies go.
    world.client.post("/ui/logout")
    assert world.client.get("/api/v1/models").status_code == 401


def test_what_a_deployer_wrote_is_shown_as_text(world: World) -> None:
    admin = world.key(Role.ADMIN)
    deploy(world, admin, artifact=tiny_model())
    world.served(**{L.STATUS: "Failed", L.STATUS_MESSAGE: "<script>alert(1)</script>"})
    sign_in(world, admin)
    for path in ("/ui/", "/ui/models/iris"):
        text = world.client.get(path).text
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_the_playground_passes_the_callers_own_key_to_the_gateway(
        world: World, gateway: Gateway) -> None:
    deployer = world.key(Role.DEPLOYER, "iris")
    deploy(world, deployer, artifact=tiny_model())
    sign_in(world, deployer)
    meta = world.client.get("/api/v1/models/iris/metadata")
    assert meta.status_code == 200 and meta.json()["inputs"][0]["name"] == "input-0"
    body = b'{"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [0, 0, 0, 0]}]}'
    answer = world.client.post("/api/v1/models/iris/infer?version=1", content=body,
                               headers={UI_HEADER: "1", "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [0]
    sent = gateway.seen[-1]
    assert sent.url.path == "/v2/models/iris/versions/1/infer" and sent.content == body
    assert sent.headers["x-api-key"] == deployer["X-API-Key"]
    assert "cookie" not in sent.headers  # the key goes as a key, nothing else of the browser's
    # Without the dashboard's header the cookie does not count: passed with no
    # credential, for the model's route to refuse.
    world.client.post("/api/v1/models/iris/infer", content=body)
    assert "x-api-key" not in gateway.seen[-1].headers
    assert world.client.post("/api/v1/models/iris/infer?version=../x", content=body,
                             headers={UI_HEADER: "1"}).status_code == 400


def test_a_models_figures_for_its_viewers(world: World) -> None:
    admin = world.key(Role.ADMIN)
    deploy(world, admin, artifact=tiny_model())
    figures = world.client.get("/api/v1/models/iris/metrics?minutes=30", headers=admin)
    assert figures.status_code == 200
    assert figures.json()["total"] == 12 and figures.json()["series"]["p99"] == [[1.0, 0.004]]
    assert world.client.get("/api/v1/models/iris/metrics?minutes=0", headers=admin
                            ).status_code == 400
    assert world.client.get("/api/v1/models/nope/metrics", headers=admin).status_code == 404
    other = world.key(Role.VIEWER, "wine")
    assert world.client.get("/api/v1/models/iris/metrics", headers=other).status_code == 403


def test_chart_queries_and_answers() -> None:
    queries = charts.chart_queries("iris")
    assert all('model="iris"' in q for q in queries.values())
    assert 'outcome="server_error"' in queries["errors"]
    assert charts.step_seconds(60) == 30 and charts.step_seconds(1) == charts.MIN_STEP_SECONDS
    answer = {"data": {"result": [{"values": [[10, "0.5"], [20, "NaN"], [30, "+Inf"]]}]}}
    assert charts.series(answer) == [(10.0, 0.5), (20.0, None), (30.0, None)]
    assert charts.series({"data": {"result": []}}) == []
    with pytest.raises(ValueError):
        charts.series({"status": "error"})


async def test_the_charts_are_read_from_prometheus_with_the_monitoring_password() -> None:
    asked: list[httpx.Request] = []

    def prometheus(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if request.url.path == "/api/v1/query_range":
            return httpx.Response(200, json={"data": {"result": [
                {"values": [[1800, "0.5"], [1830, "NaN"]]}]}})
        return httpx.Response(200, json={"data": {"result": [{"value": [3600, "7.6"]}]}})

    reader = PrometheusCharts("http://prometheus:9090/", "secret",
                              transport=httpx.MockTransport(prometheus))
    figures = await reader.model("iris", 60)
    assert figures["total"] == 8 and figures["step"] == 30
    assert figures["series"]["requests"] == [(1800.0, 0.5), (1830.0, None)]
    assert set(figures["series"]) == {"requests", "errors", "p50", "p99"}
    assert all(r.headers["authorization"] == "Basic YWlhcnQ6c2VjcmV0" for r in asked)
    assert {r.url.params["query"] for r in asked[:4]} == set(charts.chart_queries("iris").values())
    # Prometheus away or refusing: said, not a broken chart.
    refused = PrometheusCharts("http://prometheus:9090", transport=httpx.MockTransport(
        lambda _: httpx.Response(401, text="Unauthorized")))
    with pytest.raises(RuntimeError, match="Prometheus answered 401"):
        await refused.model("iris", 60)


def test_runs_for_viewers_and_the_bucket_for_deployers(world: World, tmp_path: Path) -> None:
    admin = world.key(Role.ADMIN)
    deploy(world, admin, artifact=tiny_model())
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(tiny_model())
    record = world.client.portal.call(  # type: ignore[union-attr]
        lambda: upload_run(world.store, "iris", model_file, metrics={"accuracy": 0.97},
                           params={"C": 1.0}))
    world.store.objects["aiart-iris", "payloads/2026-12-06/a.jsonl.gz"] = (b"\x1f\x8b", {})

    viewer = world.key(Role.VIEWER, "iris")
    runs = world.client.get("/api/v1/models/iris/runs", headers=viewer).json()["runs"]
    assert [(r["runId"], r["metrics"], r["params"]) for r in runs] == [
        (record.run_id, {"accuracy": 0.97}, {"C": 1.0})]
    # The bucket holds callers' requests (payload logs): its deployers only.
    assert world.client.get("/api/v1/models/iris/objects", headers=viewer).status_code == 403
    deployer = world.key(Role.DEPLOYER, "iris")
    listed = world.client.get("/api/v1/models/iris/objects?prefix=runs/", headers=deployer)
    assert listed.json()["objects"] == sorted(k for b, k in world.store.objects
                                              if b == "aiart-iris" and k.startswith("runs/"))
    key = f"runs/{record.run_id}/model/model.pkl"
    got = world.client.get(f"/api/v1/models/iris/objects/{key}", headers=deployer)
    assert got.status_code == 200 and got.content == tiny_model()
    assert got.headers["content-disposition"] == 'attachment; filename="model.pkl"'
    assert world.client.get("/api/v1/models/iris/objects/runs/nope", headers=deployer
                            ).status_code == 404
    for bad in ("runs/../x", "a//b", "runs/%20x"):
        assert world.client.get(f"/api/v1/models/iris/objects/{bad}", headers=deployer
                                ).status_code in (400, 404), bad
    assert world.client.get("/api/v1/models/wine/objects", headers=deployer).status_code == 403

    # On the model's page: the runs for a viewer, the bucket too for a deployer.
    sign_in(world, viewer)
    page = world.client.get("/ui/models/iris").text
    assert f'data-run="{record.run_id}"' in page and "accuracy=0.97" in page
    assert 'id="objects"' not in page
    world.client.cookies.clear()
    sign_in(world, deployer)
    page = world.client.get("/ui/models/iris?prefix=payloads/").text
    assert 'href="/api/v1/models/iris/objects/payloads/2026-12-06/a.jsonl.gz"' in page
    # The store away: that part of the page says so, the rest is there.
    world.store.down = True
    page = world.client.get("/ui/models/iris")
    assert page.status_code == 200 and "unreachable" in page.text


def test_a_deployer_stores_a_run_through_the_api(world: World) -> None:
    deploy(world, world.key(Role.ADMIN), artifact=tiny_model())
    deployer = world.key(Role.DEPLOYER, "iris")
    files = {"model": ("model.pkl", tiny_model())}
    stored = world.client.post("/api/v1/models/iris/runs", files=files, headers=deployer,
                               data={"metrics": '{"accuracy": 0.9}', "params": ""})
    assert stored.status_code == 201, stored.text
    run = stored.json()
    assert run["uri"] == f"run://iris/{run['runId']}" and run["metrics"] is True
    assert world.store.objects["aiart-iris", f"runs/{run['runId']}/model/model.pkl"][0] == \
        tiny_model()
    listed = world.client.get("/api/v1/models/iris/runs", headers=deployer).json()["runs"]
    assert listed[0]["metrics"] == {"accuracy": 0.9} and listed[0]["params"] is None
    for data, problem in (({"metrics": "[1]"}, "must be a JSON object"),
                          ({"params": "{nope"}, "params is not JSON")):
        refused = world.client.post("/api/v1/models/iris/runs", files=files, data=data,
                                    headers=deployer)
        assert refused.status_code == 400 and problem in refused.json()["error"]
    assert world.client.post("/api/v1/models/iris/runs", data={"metrics": "{}"},
                             headers=deployer).status_code == 415
    viewer = world.key(Role.VIEWER, "iris")
    assert world.client.post("/api/v1/models/iris/runs", files=files, headers=viewer
                             ).status_code == 403


def test_admins_alone_get_the_keys_page_and_it_shows_no_secret() -> None:
    keyed = KeysWorld(pages=ROUTES)
    with keyed.client:
        admin, _ = keyed.key(Role.ADMIN, name="root")
        deployer, made = keyed.key(Role.DEPLOYER, "iris", name="line-3")
        page = keyed.client.get("/ui/keys", headers=admin)
        assert page.status_code == 200
        assert 'href="/ui/keys"' in page.text and "line-3" in page.text
        assert made.digest not in page.text and deployer["X-API-Key"] not in page.text
        # Revoke buttons for the deployer's key, none for the admin's own.
        assert f'data-revoke="{made.id}"' in page.text and 'data-name="root"' not in page.text
        refused = keyed.client.get("/ui/keys", headers=deployer)
        assert refused.status_code == 403 and "needs role admin" in refused.text
        assert 'href="/ui/keys"' not in keyed.client.get("/ui/", headers=deployer).text
        # A key made with the sign-in cookie alone is refused: another site's
        # page could send that request (the dashboard's script adds the header).
        keyed.client.cookies.set(KEY_COOKIE, admin["X-API-Key"], path="/api/v1")
        forged = keyed.client.post("/api/v1/keys", json={"name": "evil", "role": "deployer"})
        assert forged.status_code == 401
        made_by_page = keyed.client.post("/api/v1/keys", headers={UI_HEADER: "1"},
                                         json={"name": "good", "role": "viewer"})
        assert made_by_page.status_code == 201, made_by_page.text


def test_a_models_page_shows_its_events_escaped(world: World) -> None:
    headers = world.key(Role.DEPLOYER)
    assert deploy(world, headers, artifact=tiny_model()).status_code == 202
    config = world.cluster.config("iris-1")
    record = Deployment(model="iris", version="1", config_id=config.id, runtime="sklearn",
                        manifest="", parameters={}, labels={}, image="")
    catalog = DockerCatalog(world.cluster)
    world.client.portal.call(catalog.record_deployment, record)  # type: ignore[union-attr]
    world.client.portal.call(catalog.record_status, record.key,  # type: ignore[union-attr]
                             "Failed", "build: <script>x()</script>", "2026-12-06T10:00:00Z")
    page = world.client.get("/ui/models/iris", headers=headers)
    assert page.status_code == 200
    events = page.text.split('id="events"')[1].split("</table>")[0]
    assert "Failed" in events and "2026-12-06 10:00:00" in events
    assert "&lt;script&gt;x()&lt;/script&gt;" in events and "<script>x()" not in page.text


def test_a_version_imported_from_a_package_shows_where_it_came_from(world: World) -> None:
    headers = world.key(Role.DEPLOYER)
    assert deploy(world, headers, artifact=tiny_model()).status_code == 202
    origin = {"signer": "0879e184aca1564c", "keyName": "site <a>", "package": "sha256:1",
              "image": "registry.site-a:5000/aiart/iris@sha256:2", "artifactSha256": "3",
              "sourceRun": "", "runtime": "sklearn", "libraries": "scikit-learn==1.5.2",
              "declaredAt": "2026-12-06T09:00:00Z", "importedAt": "2026-12-06T10:00:00Z"}
    config = world.cluster.config("iris-1")
    world.client.portal.call(  # type: ignore[union-attr]
        world.cluster.update_config_labels, config,
        {**config.labels, L.PACKAGE: json.dumps(origin)})
    (version,) = world.client.get("/api/v1/models/iris", headers=headers).json()["versions"]
    assert version["package"] == origin
    page = world.client.get("/ui/models/iris", headers=headers).text
    versions = page.split('id="versions"')[1].split("</table>")[0]
    assert "imported from a package" in versions and "0879e184aca1564c" in versions
    assert "scikit-learn==1.5.2" in versions and "site &lt;a&gt;" in versions
