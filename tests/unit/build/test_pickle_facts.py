"""Reading library versions from pickles without unpickling them."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest
import sklearn
from aiart.build.pickle_facts import NotAPickle, read_pickle_facts
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def model() -> object:
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols(model: object, protocol: int) -> None:
    facts = read_pickle_facts(pickle.dumps(model, protocol=protocol))
    assert facts.sklearn_version == sklearn.__version__
    assert facts.numpy_major == int(np.__version__.split(".")[0])


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3)])
def test_joblib_files(model: object, compress: object) -> None:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=compress)
    facts = read_pickle_facts(buffer.getvalue())
    assert facts.sklearn_version == sklearn.__version__
    assert facts.numpy_major == int(np.__version__.split(".")[0])


def test_an_old_pickle_names_its_versions() -> None:
    # What scikit-learn 0.24 under numpy 1 writes, in protocol 2 opcodes.
    raw = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00}q\x01("
        b"X\x10\x00\x00\x00_sklearn_versionq\x02X\x06\x00\x00\x000.24.2q\x03u."
    )
    facts = read_pickle_facts(raw)
    assert (facts.sklearn_version, facts.numpy_major) == ("0.24.2", 1)


def test_a_pickle_without_sklearn_has_no_version() -> None:
    facts = read_pickle_facts(pickle.dumps({"weights": [1, 2, 3]}))
    assert facts.sklearn_version is None and facts.numpy_major is None


@pytest.mark.parametrize("data", [b"", b"hello world", b"PK\x03\x04zipfile", b"\x1f\x8bnot gzip"])
def test_garbage_is_not_a_pickle(data: bytes) -> None:
    with pytest.raises(NotAPickle):
        read_pickle_facts(data)
