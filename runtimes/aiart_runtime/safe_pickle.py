"""Loading scikit-learn pickles without letting them run arbitrary code.

A pickle names the callables it wants called while loading, as (module,
qualified name) pairs. This loader admits only pairs on an exact allow-list
and refuses every other one *before importing anything*: a pickle cannot make
the server import a module, let alone call into it.

The list holds what a fitted scikit-learn model is made of:

- the classes scikit-learn defines (estimators, trees, losses, metrics'
  distance objects), found by walking the installed scikit-learn, each under
  the module that defines it (``obj.__module__``), never a name that a module
  merely imports (``sklearn.feature_selection._base.attrgetter`` is
  ``operator.attrgetter``, a generic callable);
- numpy's array, dtype, scalar and random generator types, its ufuncs (pure
  arithmetic), scipy's sparse matrix and array types, joblib's array wrapper;
- a handful of named reconstructors that numpy, Cython and scikit-learn's
  trees pickle through.

Nothing generic is on it: no ``getattr``, ``attrgetter``, ``partial``,
``type``, ``eval``, ``numpy.memmap`` (it creates files), threads, paths or
I/O classes. The list is made from the installed libraries at runtime image
build (``python -m aiart_runtime.safe_pickle``), so it matches the
scikit-learn version that serves the model. Manifests can opt out with
``spec.artifact.allowUnsafePickle: true`` for artifacts they trust.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pickle
import pkgutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from .settings import ServerSettings

# Where the runtime image keeps the list it made at build.
DEFAULT_ALLOWLIST = Path("/opt/aiart/pickle-allowlist.json")

Pair = tuple[str, str]

# Named functions a scikit-learn pickle legitimately calls while loading;
# each only builds an object of an allowed type from plain data. Both numpy
# spellings: numpy 2 reads pickles written by numpy 1 under the old names.
RECONSTRUCTORS: frozenset[Pair] = frozenset({
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core._multiarray_umath", "_reconstruct"),
    ("numpy._core._multiarray_umath", "_reconstruct"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    # Masked arrays (a search's cv_results_).
    ("numpy.ma.core", "_mareconstruct"),
    # Functions that estimators keep as settings (BisectingKMeans' inner
    # k-means, SelectKBest's score functions; metrics are listed below):
    # arithmetic on arrays.
    ("sklearn.cluster._kmeans", "_kmeans_single_lloyd"),
    ("sklearn.cluster._kmeans", "_kmeans_single_elkan"),
    ("sklearn.feature_selection._univariate_selection", "f_classif"),
    ("sklearn.feature_selection._univariate_selection", "f_regression"),
    ("sklearn.feature_selection._univariate_selection", "r_regression"),
    ("sklearn.feature_selection._univariate_selection", "chi2"),
    ("sklearn.feature_selection._mutual_info", "mutual_info_classif"),
    ("sklearn.feature_selection._mutual_info", "mutual_info_regression"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
})
BUILTINS: frozenset[Pair] = frozenset(("builtins", name) for name in (
    "object", "set", "frozenset", "slice", "complex", "bytearray", "range", "list", "dict",
    "tuple", "int", "float", "bool", "str", "bytes"))
CONTAINERS: frozenset[Pair] = frozenset(("collections", name) for name in (
    "OrderedDict", "defaultdict", "deque", "Counter"))

# Parts of scikit-learn that no fitted model holds: tests, data set
# downloaders, vendored code, switches that change global state.
_SKIPPED_MODULES = (".tests", "._testing", ".estimator_checks", "._mocking", "sklearn.datasets",
                    "sklearn.externals", "sklearn.experimental", "sklearn.conftest",
                    "sklearn._build_utils", "sklearn.__check_build", "sklearn.utils._show_versions")


class UnsafePickleError(Exception):
    """The pickle asked for something outside the allow-list."""


def _defined_types(module: Any) -> Iterator[tuple[str, type]]:
    """The classes a module itself defines (not those it imports)."""
    for name, obj in vars(module).items():
        if (isinstance(obj, type) and obj.__module__ == module.__name__
                and obj.__qualname__ == name):
            yield name, obj


def _harmful(cls: type) -> bool:
    """A type whose construction or state does more than hold data."""
    import numpy as np

    risky: tuple[type, ...] = (io.IOBase, threading.Thread, subprocess.Popen, os.PathLike,
                               np.memmap, BaseException)
    return issubclass(cls, risky)


def _sklearn_pairs() -> Iterator[Pair]:
    import sklearn

    names = [info.name for info in pkgutil.walk_packages(sklearn.__path__, "sklearn.")]
    for name in ["sklearn", *names]:
        if any(part in name for part in _SKIPPED_MODULES):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # an optional dependency this image lacks: nothing to pickle from it
            continue
        defined = dict(_defined_types(module))
        for cls_name, cls in defined.items():
            if not _harmful(cls):
                yield name, cls_name
        # Cython's re-constructors of the extension types defined beside them.
        for attr in vars(module):
            if (attr.startswith("__pyx_unpickle_")
                    and attr.removeprefix("__pyx_unpickle_") in defined):
                yield name, attr
        # The binary trees' and distance metrics' own reconstructor
        # (``obj.__new__(obj)``, for a type that must itself be allowed).
        if getattr(getattr(module, "newObj", None), "__module__", None) == name:
            yield name, "newObj"


def _metric_pairs() -> Iterator[Pair]:
    """scikit-learn's public metric functions, which scorers keep (a tuned
    threshold's ``balanced_accuracy_score``): arithmetic on arrays."""
    import sklearn.metrics as metrics

    for name in metrics.__all__:
        obj = getattr(metrics, name, None)
        module = getattr(obj, "__module__", "") or ""
        if callable(obj) and not isinstance(obj, type) and module.startswith("sklearn.metrics"):
            yield module, name


def _numpy_pairs() -> Iterator[Pair]:
    import numpy as np

    yield "numpy", "ndarray"
    yield "numpy", "dtype"
    yield np.ma.MaskedArray.__module__, "MaskedArray"
    for scalar in set(np.sctypeDict.values()):
        yield scalar.__module__, scalar.__qualname__
    with contextlib.suppress(ImportError):
        import numpy.dtypes as dtypes

        yield from (("numpy.dtypes", name) for name, _ in _defined_types(dtypes))
    for name in dir(np):
        if isinstance(getattr(np, name), np.ufunc):
            yield "numpy", name
    import numpy.random as npr

    for cls in (npr.RandomState, npr.Generator, npr.SeedSequence, npr.MT19937, npr.PCG64,
                npr.PCG64DXSM, npr.Philox, npr.SFC64):
        yield cls.__module__, cls.__qualname__
    yield "numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"


def _scipy_pairs() -> Iterator[Pair]:
    try:
        import scipy.sparse as sparse  # type: ignore[import-untyped]
    except ImportError:
        return
    for name in dir(sparse):
        obj = getattr(sparse, name)
        if isinstance(obj, type) and issubclass(obj, sparse.sparray | sparse.spmatrix):
            yield obj.__module__, obj.__qualname__


def build_allowlist() -> frozenset[Pair]:
    """Every (module, name) a pickle of a scikit-learn model may ask for."""
    return frozenset({*RECONSTRUCTORS, *BUILTINS, *CONTAINERS, *_sklearn_pairs(),
                      *_metric_pairs(), *_numpy_pairs(), *_scipy_pairs()})


def dump_allowlist(pairs: Iterable[Pair]) -> str:
    return json.dumps(sorted(pairs), indent=0)


@cache
def allowlist() -> frozenset[Pair]:
    """The image's list (made at build), or one made now from what is installed."""
    path = Path(ServerSettings.from_env().pickle_allowlist or DEFAULT_ALLOWLIST)
    if path.is_file():
        return frozenset((str(m), str(n)) for m, n in json.loads(path.read_text()))
    return build_allowlist()


def check_global(module: str, name: str) -> Any:
    """Resolve ``module.name`` if the allow-list names exactly that pair; else raise.

    The pair is checked before anything is imported, and the object found
    must be defined where the pickle says (or be one of the named
    reconstructors), so an alias that a module imports cannot pass."""
    if (module, name) not in allowlist():
        raise UnsafePickleError(
            f"the pickle asks for {module}.{name}, which aiart's safe loader does not allow; "
            "re-save the model with plain scikit-learn objects, or set "
            "spec.artifact.allowUnsafePickle: true if you trust this file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core's old names
        target = getattr(importlib.import_module(module), name)
    return target


@contextlib.contextmanager
def restricted_joblib() -> Iterator[None]:
    """Make joblib.load (which also reads plain pickles) use the allow-list."""
    from joblib import numpy_pickle

    original = numpy_pickle.NumpyUnpickler

    class SafeNumpyUnpickler(original):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            return check_global(module, name)

    class SafeUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return check_global(module, name)

    class SafePickleModule:
        """joblib before 1.5 read arrays of Python objects with a plain
        ``pickle.load`` of its own; these pass through the list too."""

        def __getattr__(self, attr: str) -> Any:
            return getattr(pickle, attr)

        @staticmethod
        def load(file: Any, **kwargs: Any) -> Any:
            return SafeUnpickler(file, **kwargs).load()

    original_pickle = numpy_pickle.pickle
    numpy_pickle.NumpyUnpickler = SafeNumpyUnpickler
    numpy_pickle.pickle = SafePickleModule()
    try:
        yield
    finally:
        numpy_pickle.NumpyUnpickler = original
        numpy_pickle.pickle = original_pickle


def main() -> int:
    """Print the allow-list for the installed libraries (run at image build)."""
    sys.stdout.write(dump_allowlist(build_allowlist()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
