"""The allow-list pickle loader: real scikit-learn models load, code does not run."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from aiart_runtime.model import ModelLoadError
from aiart_runtime.settings import ModelSettings
from aiart_runtime.sklearn_model import SklearnModel
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

X, Y = load_iris(return_X_y=True)


def load(tmp_path: Path, data: bytes, unsafe: bool = False) -> SklearnModel:
    (tmp_path / "model.pkl").write_bytes(data)
    (tmp_path / "model.json").write_text(json.dumps({
        "name": "m", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "allow_unsafe_pickle": unsafe}))
    model = SklearnModel(ModelSettings.load(tmp_path))
    model.load()
    return model


ESTIMATORS: list[Any] = [
    make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    RandomForestClassifier(n_estimators=5, random_state=0),
    GradientBoostingClassifier(n_estimators=5, random_state=0),
    SVC(random_state=0),
    KMeans(n_clusters=3, n_init=2, random_state=0),
    DecisionTreeRegressor(max_depth=3),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("writer", ["pickle", "joblib", "joblib-zlib"])
def test_real_models_load_through_the_allow_list(tmp_path: Path, estimator: Any,
                                                 writer: str) -> None:
    fitted = estimator.fit(X, Y)
    if writer == "pickle":
        data = pickle.dumps(fitted)
    else:
        buffer = io.BytesIO()
        joblib.dump(fitted, buffer, compress=3 if writer == "joblib-zlib" else 0)
        data = buffer.getvalue()
    model = load(tmp_path, data)
    assert np.array_equal(model.estimator.predict(X[:10]), fitted.predict(X[:10]))


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class Evals:
    def __reduce__(self) -> Any:
        return (eval, ("__import__('os').getpid()",))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(ModelLoadError, match=r"asks for (posix|os)\.system"):
        load(tmp_path, pickle.dumps(RunsCode(marker)))
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match=r"builtins\.eval"):
        load(tmp_path, pickle.dumps(Evals()))


def test_numpy_helpers_that_exec_are_refused(tmp_path: Path) -> None:
    raw = b"\x80\x04cnumpy.testing._private.utils\nrunstring\n(S'1'\n}tR."
    with pytest.raises(ModelLoadError, match="does not allow"):
        load(tmp_path, raw)


def test_the_opt_out_loads_what_the_user_vouches_for(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ModelLoadError, match="no predict method"):
        load(tmp_path, pickle.dumps(RunsCode(marker)), unsafe=True)
    assert marker.exists(), "with allowUnsafePickle the pickle is loaded as written"
