"""The manifest parser: tables of good and bad manifests, every problem reported."""

from __future__ import annotations

import textwrap

import pytest
from aiart.core.spec import ManifestError, parse_manifest
from aiart.core.store_layout import ConfigRef

GOOD = textwrap.dedent("""
    apiVersion: aiart/v1
    kind: Model
    metadata: {name: iris, version: "1"}
    spec:
      runtime: sklearn
      artifact: {uri: "config://iris-model-1"}
      auth: {mode: none}
""")


def manifest(**spec: str) -> str:
    lines = "\n".join(f"  {k}: {v}" for k, v in spec.items())
    return textwrap.dedent("""
        apiVersion: aiart/v1
        kind: Model
        metadata: {name: iris, version: "1"}
        spec:
          runtime: sklearn
          artifact: {uri: "config://iris-model-1"}
    """) + lines + "\n"


def problems(text: str | bytes) -> tuple[str, ...]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    return info.value.problems


def test_minimal_manifest_has_documented_defaults() -> None:
    m = parse_manifest(GOOD)
    assert (m.metadata.name, m.metadata.version) == ("iris", "1")
    assert m.spec.runtime.value == "sklearn"
    assert m.spec.artifact.ref == ConfigRef("iris-model-1")
    assert m.spec.replicas == 1
    assert m.spec.auth.mode.value == "none"
    assert m.spec.inputs is None and m.spec.env == {}


def test_full_manifest() -> None:
    m = parse_manifest(textwrap.dedent("""
        apiVersion: aiart/v1
        kind: Model
        metadata:
          name: churn
          version: 2
          description: churn model
          labels: {team: crm, stage: prod}
        spec:
          runtime: sklearn
          artifact: {uri: "config://churn-2", sha256: "%s", format: joblib, allowUnsafePickle: true}
          framework: {sklearn: "1.5.2", numpy: 1}
          replicas: 3
          resources:
            limits: {cpus: 2, memory: 1Gi}
            reservations: {cpus: "0.25", memory: 256M}
          env: {OMP_NUM_THREADS: "1"}
          inputs: [{name: x, datatype: FP32, shape: [-1, 8]}]
          outputs: [{name: label, datatype: INT64, shape: [-1]}]
          auth: {mode: none}
    """ % ("a" * 64)))
    assert m.metadata.version == "2"  # a YAML integer version is kept as text
    assert m.spec.artifact.allowUnsafePickle is True
    assert m.spec.resources.limits.memory_bytes == 2**30
    assert m.spec.resources.reservations.memory_bytes == 256 * 10**6
    assert m.spec.resources.reservations.cpus == 0.25
    assert m.spec.framework.sklearn == "1.5.2" and m.spec.framework.numpy == 1
    assert m.spec.inputs is not None and m.spec.inputs[0].shape == [-1, 8]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (": : :", "not valid YAML"),
        ("- a\n- b", "must be a mapping"),
        (GOOD.replace("aiart/v1", "aiart/v2"), "apiVersion"),
        (GOOD.replace("name: iris", "name: Iris"), "metadata.name: name 'Iris' must be a DNS label"),
        (GOOD.replace("name: iris", "name: iris_model"), "DNS label"),
        (GOOD.replace('version: "1"', 'version: "1.2"'), "metadata.version"),
        (GOOD.replace("name: iris", "name: " + "a" * 60), "too long together"),
        (GOOD.replace("runtime: sklearn", "runtime: tensorflow"), "spec.runtime"),
        (GOOD.replace("config://iris-model-1", "iris.pkl"), "is not a URI"),
        (GOOD.replace("config://iris-model-1", "http://x/iris.pkl"), "scheme 'http'"),
        (GOOD.replace("config://iris-model-1", "config://../etc"), "not a valid Docker config"),
        (GOOD.replace("mode: none", "mode: open"), "spec.auth.mode"),
        (GOOD.replace("mode: none", "mode: apikey, scopes: [a]"), "only for mode oidc"),
        (GOOD.replace("mode: none", "mode: oidc, scopes: ['a b']"), "spec.auth.scopes[0]"),
        (GOOD.replace("mode: none", "mode: oidc, scopes: ['x&mode=none']"), "spec.auth.scopes[0]"),
        (GOOD + "  rateLimit: {average: 0}\n", "spec.rateLimit.average"),
        (GOOD + "  replica: 2\n", "spec.replica: unknown field"),
        (GOOD.replace("kind: Model", "kind: Model\nextra: 1"), "extra: unknown field"),
        (manifest(replicas="-1"), "spec.replicas"),
        (manifest(replicas='"2"'), "spec.replicas"),
        (manifest(env="{AIART_X: y}"), "reserved"),
        (manifest(env='{"BAD NAME": y}'), "not valid"),
        (manifest(resources="{limits: {memory: lots}}"), "not a memory size"),
        (manifest(resources="{limits: {cpus: many}}"), "not a number of CPUs"),
        (manifest(framework='{sklearn: "latest"}'), "not a scikit-learn version"),
        (manifest(inputs="[{name: x, datatype: FP99, shape: [1]}]"), "spec.inputs[0].datatype"),
        (manifest(inputs="[{name: x, datatype: FP32, shape: [-2]}]"), "spec.inputs[0].shape[0]"),
        (manifest(artifact='{uri: "config://a", sha256: "xyz"}'), "sha256"),
        (manifest(batching="{maxBatchSize: 1, maxLatencyMs: 5}"), "spec.batching.maxBatchSize"),
        (manifest(batching="{maxBatchSize: 8, maxLatencyMs: 0}"), "spec.batching.maxLatencyMs"),
        (manifest(batching="{maxBatchSize: 8}"), "spec.batching.maxLatencyMs"),
        (manifest(maxRequestBytes="100"), "spec.maxRequestBytes: Input should be greater than or equal to 1024"),
        (manifest(maxRequestBytes="2000000000"), "spec.maxRequestBytes: Input should be less than or equal to"),
    ],
)
def test_bad_manifests_say_what_is_wrong(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("name: iris", "name: Iris").replace("runtime: sklearn", "runtime: x")
    found = problems(text + "  bogus: 1\n")
    assert len(found) == 3, found


def test_missing_fields_are_named() -> None:
    found = problems("apiVersion: aiart/v1\nkind: Model\nmetadata: {name: a}\n")
    assert "metadata.version: required field is missing" in found
    assert "spec: required field is missing" in found


def test_oversized_and_binary_manifests_are_refused() -> None:
    assert "at most" in problems(b"a" * 70_000)[0]
    assert "UTF-8" in problems(b"\xff\xfe\x00garbage")[0]


IMAGE = textwrap.dedent("""
    apiVersion: aiart/v1
    kind: Model
    metadata: {name: byo, version: "1"}
    spec:
      runtime: image
      image: registry.example:5000/team/model:1.2
""")


def test_image_runtime_takes_an_image_and_a_port() -> None:
    m = parse_manifest(IMAGE + "  port: 9000\n")
    assert m.spec.image == "registry.example:5000/team/model:1.2" and m.spec.port == 9000
    assert m.spec.artifact is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (IMAGE.replace("registry.example:5000/team/model:1.2", "'a b'"), "not an image reference"),
        (IMAGE.replace("registry.example:5000/team/model:1.2", "'x;rm -rf /'"), "not an image reference"),
        (IMAGE.replace("  image: registry.example:5000/team/model:1.2\n", ""), "needs spec.image"),
        (IMAGE + "  artifact: {uri: 'config://a'}\n", "remove spec.artifact"),
        (IMAGE + "  port: 70000\n", "spec.port"),
        (IMAGE + "  batching: {maxBatchSize: 8, maxLatencyMs: 5}\n", "batches (or not) by itself"),
        (IMAGE + "  maxRequestBytes: 65536\n", "a ready image sets its own limits"),
        (IMAGE + "  logging: {sample: 0.5}\n", "a ready image logs (or not) by itself"),
        (GOOD + "  image: a/b:1\n", "only for runtime image"),
        (GOOD + "  port: 9000\n", "only for runtime image"),
        (GOOD.replace('  artifact: {uri: "config://iris-model-1"}\n', ""), "needs spec.artifact"),
    ],
)
def test_runtime_inputs_must_fit_the_runtime(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


PYTHON = GOOD.replace("runtime: sklearn", "runtime: python")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('  requirements: ["requests"]\n', "must be pinned"),
        ('  requirements: ["requests>=2"]\n', "must be pinned"),
        ('  requirements: ["requests==2.0; rm -rf /"]\n', "must be pinned"),
        ('  requirements: ["--index-url=http://evil/ x==1"]\n', "must be pinned"),
        ('  requirements: ["git+https://x/y==1"]\n', "must be pinned"),
        ('  entrypoint: "os.system"\n', "must be a Python class name"),
    ],
)
def test_python_runtime_inputs_are_strict(extra: str, expected: str) -> None:
    found = problems(PYTHON + extra)
    assert any(expected in p for p in found), found


def test_python_runtime_accepts_pinned_requirements_and_a_class() -> None:
    m = parse_manifest(PYTHON + '  requirements: ["six==1.17.0", "uvicorn[standard]==0.30.1"]\n'
                       '  entrypoint: Model\n')
    assert m.spec.requirements == ["six==1.17.0", "uvicorn[standard]==0.30.1"]
    assert m.spec.entrypoint == "Model"
    assert "only for runtime python" in problems(GOOD + "  entrypoint: Model\n")[0]


def test_payload_logging_takes_a_share_of_requests() -> None:
    m = parse_manifest(manifest(logging="{sample: 0.1, to: bucket}"))
    assert m.spec.logging is not None and m.spec.logging.sample == 0.1
    assert m.spec.wants_store and not m.spec.store.credentials
    assert parse_manifest(manifest(logging="{}")).spec.logging.sample == 1.0  # type: ignore[union-attr]
    assert parse_manifest(manifest(logging="{sample: 1}")).spec.logging.sample == 1.0  # type: ignore[union-attr]
    assert not parse_manifest(GOOD).spec.wants_store
    for bad, expected in (("{sample: 0}", "greater than 0"), ("{sample: 1.5}", "less than or equal to 1"),
                          ("{to: stdout}", "'bucket'"), ("{every: 2}", "unknown field")):
        found = problems(manifest(logging=bad))
        assert any(p.startswith("spec.logging") and expected in p for p in found), found
