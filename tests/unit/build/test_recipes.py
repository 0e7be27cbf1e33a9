"""Runtime images' recipes: what the Dockerfile they render says."""

from __future__ import annotations

import re

from aiart.build.recipes import onnx_runtime, sklearn_runtime
from aiart.core import labels as L


def test_a_runtime_image_is_labelled_with_the_libraries_it_runs_models_with() -> None:
    # Read back from the image wherever it goes: a model package's provenance.
    for recipe, wanted in (
            (sklearn_runtime(sklearn="1.5.2", numpy_major=2, base_image="base",
                             python_version="3.11"), "scikit-learn==1.5.2 numpy>=2,<3 joblib"),
            (onnx_runtime(onnxruntime="1.32.0", base_image="base", python_version="3.11"),
             "onnxruntime==1.32.0 numpy>=1.26")):
        final_stage = recipe.dockerfile().rsplit("\nFROM ", 1)[1]
        found = re.search(rf'^LABEL {re.escape(L.RUNTIME_LIBRARIES)}="([^"]*)"$', final_stage,
                          re.MULTILINE)
        assert found is not None, final_stage
        assert found.group(1) == wanted
