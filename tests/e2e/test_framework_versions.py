"""A pickle is served on a runtime with the library versions that wrote it;
versions that cannot be had fail clearly."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.conftest import Models

OLD_PICKLE = Path(__file__).parents[1] / "fixtures" / "iris-sklearn-1.5.2-np1.pkl"


def test_an_older_scikit_learn_pickle_gets_its_own_runtime(models: Models,
                                                          gateway: httpx.Client) -> None:
    model = models.name("old")
    config = models.declare(model, "1", OLD_PICKLE.read_bytes())
    # The first time, the operator downloads scikit-learn 1.5.2 and numpy 1
    # wheels and builds their runtime image; later runs reuse it.
    models.wait_status(config, "Ready", timeout=600)
    runtimes = [tag for image in models.engine.images.list(filters={"label": "aiart.runtime=sklearn"})
                for tag in image.tags]
    assert any(":1.5.2-np1-" in tag for tag in runtimes), runtimes
    response = gateway.post(f"/models/{model}/predict",
                            json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert response.json() == {"predictions": [0, 2]}


def test_a_version_without_wheels_fails_clearly(models: Models, iris_pickle: bytes) -> None:
    model = models.name("ancient")
    config = models.declare(model, "1", iris_pickle, framework='{sklearn: "0.20.0"}')
    labels = models.wait_status(config, "Failed", timeout=180)
    assert "no wheels for scikit-learn==0.20.0" in labels["aiart.status.message"], labels
