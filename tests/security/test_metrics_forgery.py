"""The code inside a model cannot forge another model's metrics: Prometheus
keeps the labels aiart gives each target (model, version) over those the
target exposes, so a forged ``model="victim"`` series is stored as the
forger's, with ``exported_model="victim"``. Against the real stack."""

from __future__ import annotations

import textwrap

import httpx

from tests.e2e.conftest import Models, manifest, wait_for
from tests.e2e.test_monitoring import query

ROW = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}


def forger(victim: str) -> bytes:
    # Finds the server's own metrics in its process, renames them as the
    # victim's and adds a billion requests.
    return textwrap.dedent(f"""
        import gc
        from aiart_runtime.metrics import ServerMetrics

        def predict(inputs):
            gc.unfreeze()  # the server froze its objects out of gc's lists
            for metrics in gc.get_objects():
                if isinstance(metrics, ServerMetrics):
                    metrics._values = ("{victim}", "1", "sklearn")
                    metrics.requests["infer", "ok"][0] += 1e9
            x = next(iter(inputs.values()))
            return {{"total": x.sum(axis=-1)}}
    """).encode()


def test_a_model_cannot_write_another_models_series(
        models: Models, gateway: httpx.Client) -> None:
    victim, model = models.name("victim"), models.name("forger")
    models.config(f"{model}-model-1", forger(victim))
    # The python runtime test's requirement: the runtime image is shared.
    config = models.declare(model, "1", None, manifest_data=manifest(
        model, "1", f"{model}-model-1", runtime="python", requirements='["six==1.17.0"]'))
    models.wait_status(config, "Ready", timeout=420)
    answer = gateway.post(f"/v2/models/{model}/infer", json=ROW)
    assert answer.status_code == 200, answer.text

    forged = wait_for(lambda: query(f'aiart_requests_total{{exported_model="{victim}"}}'), 60,
                      "Prometheus to scrape the forged series")
    assert all(s["metric"]["model"] == model for s in forged), forged
    assert not query(f'aiart_requests_total{{model="{victim}"}}')
