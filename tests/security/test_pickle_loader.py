"""The code inside a model: a pickle cannot run code through the safe loader.

Each attack is first shown to work with a plain ``pickle.loads`` (so the test
proves something), then refused by the sklearn runtime's loader. The loader's
allow-list is made here from the installed scikit-learn, as the runtime image
makes it at build; every estimator scikit-learn lists with a ``predict``
still loads through it.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from aiart_runtime import safe_pickle
from aiart_runtime.model import ModelLoadError
from aiart_runtime.settings import ModelSettings
from aiart_runtime.sklearn_model import SklearnModel
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils import all_estimators

X, Y = load_iris(return_X_y=True)


def load(tmp_path: Path, data: bytes) -> SklearnModel:
    (tmp_path / "model.pkl").write_bytes(data)
    (tmp_path / "model.json").write_text(json.dumps({
        "name": "m", "version": "1", "runtime": "sklearn", "artifact": "model.pkl"}))
    model = SklearnModel(ModelSettings.load(tmp_path))
    model.load()
    return model


def attrgetter_escape(command: str) -> bytes:
    """The escape found against the old loader: an alias of operator.attrgetter
    that scikit-learn imports, walked to os.system through a joblib class's
    function globals. Only names of the allowed libraries appear in it."""
    return (b"\x80\x02csklearn.feature_selection._base\nattrgetter\n(Vsystem\ntR("
            b"csklearn.feature_selection._base\nattrgetter\n(V__init__.__globals__.get\ntR"
            b"(cjoblib.numpy_pickle\nNumpyArrayWrapper\ntR(Vos\ntRtR"
            b"(V" + command.encode() + b"\ntR.")


def test_an_alias_of_a_generic_callable_cannot_reach_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pickle.loads(attrgetter_escape(f"touch {marker}"))
    assert marker.exists(), "the escape works with a plain unpickler"
    marker.unlink()
    with pytest.raises(ModelLoadError, match=r"asks for sklearn\.feature_selection\._base"
                                             r"\.attrgetter"):
        load(tmp_path, attrgetter_escape(f"touch {marker}"))
    assert not marker.exists()


def test_numpy_memmap_cannot_create_files(tmp_path: Path) -> None:
    target = tmp_path / "created-by-pickle"
    payload = (b"\x80\x02cnumpy\nmemmap\n(V" + str(target).encode()
               + b"\nVuint8\nVw+\nK\x00(K\x10ttR.")
    pickle.loads(payload)
    assert target.exists(), "numpy.memmap creates files from a plain pickle"
    target.unlink()
    with pytest.raises(ModelLoadError, match=r"asks for numpy\.memmap"):
        load(tmp_path, payload)
    assert not target.exists()


def test_a_module_the_list_does_not_name_is_never_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    module = f"aiart_test_side_effect_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Model:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ModelLoadError, match="does not allow"):
            load(tmp_path, b"\x80\x02c" + module.encode() + b"\nModel\n)R.")
        assert not marker.exists(), "the loader imported a module before checking it"
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("name", ["getattr", "eval", "exec", "__import__", "open"])
def test_builtins_that_reach_anything_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelLoadError, match=f"builtins.{name}"):
        load(tmp_path, b"\x80\x02cbuiltins\n" + name.encode() + b"\n(Vx\ntR.")


@pytest.mark.parametrize("module,name", [
    ("operator", "attrgetter"), ("functools", "partial"), ("builtins", "type"),
    ("joblib.numpy_pickle", "ArrayMemmapWrapper"), ("threading", "Thread"),
    ("pathlib", "Path"), ("io", "FileIO"), ("numpy", "vectorize"), ("numpy", "load"),
    ("numpy.lib._datasource", "DataSource"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper.__init__"),
])
def test_generic_callables_are_not_on_the_list(module: str, name: str) -> None:
    assert (module, name) not in safe_pickle.allowlist()
    with pytest.raises(safe_pickle.UnsafePickleError):
        safe_pickle.check_global(module, name)


def test_an_object_array_inside_a_joblib_file_goes_through_the_list(tmp_path: Path) -> None:
    class Runs:
        def __reduce__(self) -> Any:
            return (eval, ("1",))

    buffer = io.BytesIO()
    joblib.dump({"a": np.array([Runs()], dtype=object)}, buffer)
    with pytest.raises(ModelLoadError, match=r"builtins\.eval"):
        load(tmp_path, buffer.getvalue())


def _construct(cls: type) -> Any:
    """An instance of an estimator, with what its constructor requires."""
    regressor = issubclass(cls, RegressorMixin) and not issubclass(cls, ClassifierMixin)
    base = Ridge() if regressor else LogisticRegression(max_iter=300)
    tree = DecisionTreeRegressor() if regressor else DecisionTreeClassifier()
    required: dict[str, dict[str, Any]] = {
        "estimator": {"estimator": base},
        "estimators": {"estimators": [("a", base), ("b", tree)]},
        "steps": {"steps": [("scale", StandardScaler()), ("model", base)]},
        "param_grid": {"param_grid": {"alpha" if regressor else "C": [1.0]}},
        "param_distributions": {"param_distributions": {
            "alpha" if regressor else "C": [1.0]}, "n_iter": 1},
        "base_estimator": {"base_estimator": base},
    }
    kwargs: dict[str, Any] = {}
    try:
        estimator = cls()
    except TypeError:
        pass
    else:
        if not regressor and estimator.get_params().get("estimator", "") is None:
            estimator.set_params(estimator=base)
        if "novelty" in estimator.get_params():
            estimator.set_params(novelty=True)  # LocalOutlierFactor predicts only then
        return estimator
    for needed, values in required.items():
        if needed in cls.__init__.__code__.co_varnames:
            kwargs.update(values)
    return cls(**kwargs)


def _fit(estimator: Any) -> tuple[Any, Any]:
    """Fit on iris, or on the input and target shapes the estimator asks
    for; returns it and the features it takes."""
    targets = [Y, Y % 2, Y + 1.0, np.column_stack([Y, Y % 2])]
    problems = []
    for kind in (None, {"n_components": 1}):
        if kind:
            try:
                estimator.set_params(**kind)
            except ValueError:
                continue
        for features in (X, X[:, :1]):
            for target in targets:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        return estimator.fit(features, target), features
                except Exception as exc:  # the next shape, else reported below
                    problems.append(f"{type(exc).__name__}: {exc}")
    raise AssertionError(f"cannot fit {type(estimator).__name__}: {problems[0]}")


PREDICTORS = [(name, cls) for name, cls in all_estimators() if hasattr(cls, "predict")]


def test_every_scikit_learn_predictor_loads_through_the_list(tmp_path: Path) -> None:
    refused = {}
    for name, cls in PREDICTORS:
        fitted, features = _fit(_construct(cls))
        try:
            model = load(tmp_path, pickle.dumps(fitted, protocol=5))
        except ModelLoadError as exc:
            refused[name] = str(exc).split(", which")[0]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert np.array_equal(model.estimator.predict(features[:10]),
                                  fitted.predict(features[:10])), name
    assert len(PREDICTORS) > 80, "scikit-learn lists its estimators"
    assert not refused, refused


def test_a_real_pipeline_with_categories_and_boosting_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], size=len(X))
    rows = np.column_stack([X.astype(object), colour])
    pipeline = Pipeline([
        ("columns", ColumnTransformer([
            ("numbers", StandardScaler(), [0, 1, 2, 3]),
            ("colour", OneHotEncoder(handle_unknown="ignore"), [4]),
        ])),
        ("model", HistGradientBoostingClassifier(max_iter=20, random_state=0)),
    ]).fit(rows, Y)
    for compress in (0, 3):
        buffer = io.BytesIO()
        joblib.dump(pipeline, buffer, compress=compress)
        model = load(tmp_path, buffer.getvalue())
        assert np.array_equal(model.estimator.predict(rows[:20]), pipeline.predict(rows[:20]))


def test_the_list_made_at_image_build_is_the_one_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime image writes the list at build (runtime recipe) and the
    loader reads it from there: a list without LogisticRegression refuses it."""
    pairs = safe_pickle.build_allowlist() - {("sklearn.linear_model._logistic",
                                               "LogisticRegression")}
    path = tmp_path / "allowlist.json"
    path.write_text(safe_pickle.dump_allowlist(pairs))
    monkeypatch.setenv("AIART_PICKLE_ALLOWLIST", str(path))
    safe_pickle.allowlist.cache_clear()
    try:
        fitted = LogisticRegression(max_iter=300).fit(X, Y)
        with pytest.raises(ModelLoadError, match="LogisticRegression"):
            load(tmp_path, pickle.dumps(fitted))
        assert load(tmp_path, pickle.dumps(Ridge().fit(X, Y))).estimator is not None
    finally:
        safe_pickle.allowlist.cache_clear()
