"""runtime: python: the user's module and pinned requirements, built and served."""

from __future__ import annotations

import textwrap

import httpx

from tests.e2e.conftest import Models, manifest

CODE = textwrap.dedent("""
    import numpy as np
    import six  # a pinned requirement, installed into the image

    def load():
        assert six.PY3

    def predict(inputs):
        x = next(iter(inputs.values()))
        return {"total": x.sum(axis=-1), "six": np.array([six.__version__] * len(x))}
""").encode()


def test_user_code_with_requirements(models: Models, gateway: httpx.Client) -> None:
    model = models.name("code")
    models.config(f"{model}-model-1", CODE)
    config = models.declare(model, "1", None, manifest_data=manifest(
        model, "1", f"{model}-model-1", runtime="python", requirements='["six==1.17.0"]'))
    models.wait_status(config, "Ready", timeout=420)
    response = gateway.post(f"/v2/models/{model}/infer", json={"inputs": [
        {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs == {"total": [3.0, 7.0], "six": ["1.17.0", "1.17.0"]}
