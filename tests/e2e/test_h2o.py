"""An H2O MOJO (exported by a real H2O 3.46.0.9) served through Traefik."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton

from tests.e2e.conftest import Models, triton_client

MOJO = Path(__file__).parents[1] / "fixtures" / "iris-h2o-gbm.zip"


def test_h2o_mojo_through_the_gateway(models: Models, gateway: httpx.Client) -> None:
    model = models.name("h2o")
    config = models.declare(model, "1", MOJO.read_bytes(), runtime="h2o")
    models.wait_status(config, "Ready", timeout=300)
    assert gateway.get(f"/v2/models/{model}").json()["platform"] == "h2o_mojo"
    client = triton_client(f"/models/{model}")
    for binary in (False, True):
        tensor = triton.InferInput("input-0", [2, 4], "FP64")
        tensor.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]),
                                   binary_data=binary)
        result = client.infer(model, [tensor], outputs=[
            triton.InferRequestedOutput("predict", binary_data=binary),
            triton.InferRequestedOutput("probabilities", binary_data=binary)])
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")]
        assert labels == ["setosa", "virginica"]
        assert result.as_numpy("probabilities").shape == (2, 3)


def test_a_file_that_is_not_a_mojo_fails(models: Models, iris_pickle: bytes) -> None:
    model = models.name("notmojo")
    config = models.declare(model, "1", iris_pickle, runtime="h2o")
    labels = models.wait_status(config, "Failed", timeout=60)
    assert "not an H2O MOJO" in labels["aiart.status.message"]
