"""Loading scikit-learn pickles without letting them run arbitrary code.

A pickle names the callables it wants called while loading. This loader lets
through only *types* from the libraries a scikit-learn model is made of
(scikit-learn, numpy, scipy, joblib) and a short list of named functions
that numpy and the pickle protocol themselves need; anything else (``os.system``,
``builtins.eval``, ``subprocess.Popen``, a numpy helper that execs a string)
is refused with the name it asked for. Manifests can opt out with
``spec.artifact.allowUnsafePickle: true`` for artifacts they trust.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

ALLOWED_TYPE_PREFIXES = ("sklearn.", "numpy", "scipy.", "joblib.", "collections")
# Functions (not types) a scikit-learn pickle legitimately calls while loading.
ALLOWED_FUNCTIONS = frozenset({
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("scipy.sparse._csr", "csr_matrix"),
})
ALLOWED_BUILTINS = frozenset({
    "object", "set", "frozenset", "slice", "complex", "bytearray", "range", "list", "dict",
    "tuple", "int", "float", "bool", "str", "bytes", "getattr",
})
# Inside the allowed libraries, modules whose types have no business in a model.
DENIED_PREFIXES = ("numpy.testing", "numpy.distutils", "numpy.f2py", "numpy.ctypeslib")


class UnsafePickleError(Exception):
    """The pickle asked for something outside the allow-list."""


def check_global(module: str, name: str) -> Any:
    """Resolve ``module.name`` if the allow-list admits it; else raise."""
    if module == "builtins" and name in ALLOWED_BUILTINS and name != "getattr":
        return getattr(importlib.import_module("builtins"), name)
    refused = UnsafePickleError(
        f"the pickle asks for {module}.{name}, which aiart's safe loader does not allow; "
        "re-save the model with plain scikit-learn objects, or set "
        "spec.artifact.allowUnsafePickle: true if you trust this file")
    if module.startswith(DENIED_PREFIXES) or "." in name:
        raise refused
    target = getattr(importlib.import_module(module), name, None)
    if target is None:
        raise refused
    if (module, name) in ALLOWED_FUNCTIONS:
        return target
    # Cython's generated re-constructors of the libraries' own extension types.
    if name.startswith("__pyx_unpickle_") and module.startswith(ALLOWED_TYPE_PREFIXES):
        return target
    if isinstance(target, type) and module.startswith(ALLOWED_TYPE_PREFIXES):
        return target
    raise refused


@contextlib.contextmanager
def restricted_joblib() -> Iterator[None]:
    """Make joblib.load (which also reads plain pickles) use the allow-list."""
    from joblib import numpy_pickle

    original = numpy_pickle.NumpyUnpickler

    class SafeNumpyUnpickler(original):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            # joblib's own wrapper for arrays stored after the pickle stream.
            if module == "joblib.numpy_pickle" and name in ("NumpyArrayWrapper",
                                                            "ArrayMemmapWrapper"):
                return super().find_class(module, name)
            return check_global(module, name)

    numpy_pickle.NumpyUnpickler = SafeNumpyUnpickler
    try:
        yield
    finally:
        numpy_pickle.NumpyUnpickler = original
