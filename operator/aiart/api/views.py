"""What aiart's REST API shows and accepts. Pure: no I/O.

The API only reads and writes labelled configs (and the object store): a
model is the set of configs labelled ``aiart.model=<name>``, and its status
is what the operator wrote on them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from aiart.auth.access import KEY_NAME, ApiKey, Role
from aiart.core import jobs, packages, rollout
from aiart.core import labels as L
from aiart.core.objects import ConfigObject
from aiart.core.spec import Manifest, ManifestError, image_repository, parse_manifest
from aiart.core.store_layout import ConfigRef, RunRef, S3Ref, bucket_for

ROLE_RANK = {Role.VIEWER: 0, Role.DEPLOYER: 1, Role.ADMIN: 2}
CONFIG_LIMIT = 500 * 1024  # Docker's limit for a config's data


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    subject: str
    role: Role
    models: tuple[str, ...]  # ("*",): every model

    def may(self, role: Role, model: str | None = None) -> bool:
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            return False
        return model is None or "*" in self.models or model in self.models

    @classmethod
    def from_key(cls, key: ApiKey) -> Principal:
        return cls(subject=f"apikey:{key.name}", role=key.role, models=key.models)

    @classmethod
    def from_claims(cls, claims: dict[str, Any], *, roles_claim: str = "realm_access.roles",
                    prefix: str = "aiart:") -> Principal | None:
        """A token's role from the claim at ``roles_claim`` (a dotted path),
        counting only names with aiart's prefix (``aiart:viewer``,
        ``aiart:deployer``, ``aiart:admin``): a plain ``admin`` that the
        issuer grants for another application gives nothing here. None
        when it holds none of them."""
        names: Any = claims
        for part in roles_claim.split("."):
            names = names.get(part) if isinstance(names, dict) else None
        if isinstance(names, str):
            names = names.split()
        values = {r.value for r in Role}
        found = [Role(n.removeprefix(prefix)) for n in map(str, names or [])
                 if n.startswith(prefix) and n.removeprefix(prefix) in values]
        if not found:
            return None
        best = max(found, key=lambda r: ROLE_RANK[r])
        return cls(subject=f"oidc:{claims.get('sub', '?')}", role=best, models=("*",))


def version_view(config: ConfigObject) -> dict[str, Any]:
    labels = config.labels
    manifest_version = labels.get(L.VERSION) or ""
    try:
        manifest = parse_manifest(config.data)
        manifest_version = manifest.metadata.version
        runtime = manifest.spec.runtime.value
    except ManifestError:
        runtime = ""
    return {
        "version": manifest_version, "config": config.name, "configId": config.id,
        "created": config.created_at, "runtime": runtime,
        "status": labels.get(L.STATUS, "Pending"), "message": labels.get(L.STATUS_MESSAGE, ""),
        "endpoint": labels.get(L.STATUS_ENDPOINT, ""), "image": labels.get(L.STATUS_IMAGE, ""),
        "replicas": labels.get(L.STATUS_REPLICAS, ""),
        # A scalable version's: replicas wanted and why (docs/scaling.md).
        "scale": {"replicas": labels.get(L.SCALE_REPLICAS, ""),
                  "status": labels.get(L.STATUS_SCALE, "")}
        if L.SCALE_REPLICAS in labels else None,
        "current": labels.get(L.STATUS_CURRENT) == "true",
        # Imported from a model package: where it came from (docs/packages.md).
        "package": packages.read_origin(labels.get(L.PACKAGE, "")),
        # As declared (the dashboard shows it); manifests hold no secrets.
        "manifest": config.data.decode("utf-8", "replace"),
        "alerts": [a for a in labels.get(L.STATUS_ALERTS, "").split(",") if a],
        # Where its rollout stands (docs/rollouts.md); empty: it has none.
        "rollout": {"phase": labels.get(rollout.PHASE, ""),
                    "stable": labels.get(rollout.STABLE, ""),
                    "step": labels.get(rollout.STEP, ""),
                    "status": labels.get(L.STATUS_ROLLOUT, "")}
        if rollout.PHASE in labels else None,
    }


def job_view(config: ConfigObject) -> dict[str, Any]:
    """A batch job as the API shows it (core/jobs.py)."""
    labels = config.labels
    model, job_id = labels.get(L.JOB_OF, ""), labels.get(L.JOB, "")
    try:
        spec: jobs.JobSpec | None = jobs.parse_job(config.data)
    except jobs.JobError:
        spec = None

    def count(label: str) -> int | None:
        value = labels.get(label, "")
        return int(value) if value.isdigit() else None

    return {
        "id": job_id, "model": model, "config": config.name, "created": config.created_at,
        "createdBy": labels.get(L.CREATED_BY, ""),
        "version": labels.get(L.JOB_VERSION) or (spec.version if spec else None),
        "input": spec.input if spec else None, "chunkRows": spec.chunkRows if spec else None,
        "status": labels.get(L.STATUS, "Pending"), "message": labels.get(L.STATUS_MESSAGE, ""),
        "rowsDone": count(L.STATUS_ROWS_DONE), "rowsKnown": count(L.STATUS_ROWS_KNOWN),
        "results": f"s3://{bucket_for(model)}/jobs/{job_id}/" if model else None,
    }


def model_views(configs: Iterable[ConfigObject]) -> list[dict[str, Any]]:
    by_model: dict[str, list[ConfigObject]] = {}
    for config in configs:
        model = config.labels.get(L.MODEL)
        if model:
            by_model.setdefault(model, []).append(config)
    out = []
    for model, items in sorted(by_model.items()):
        versions = [version_view(c) for c in sorted(items, key=lambda c: c.created_at)]
        current = next((v for v in versions if v["current"]), None)
        out.append({"name": model, "versions": versions,
                    "status": current["status"] if current else versions[-1]["status"],
                    "endpoint": current["endpoint"] if current else ""})
    return out


@dataclass(frozen=True, slots=True)
class Upload:
    """A deploy request made into what the operator reads: the manifest to
    store, where its artifact goes, and names for both configs."""

    manifest: Manifest
    manifest_bytes: bytes
    config_name: str
    artifact_config: str | None  # store the artifact as this config...
    artifact_key: str | None  # ...or under this key of the model's bucket
    artifact_sha256: str | None


def plan_upload(manifest_text: bytes, artifact: bytes | None, filename: str | None) -> Upload:
    """Validate the manifest (the operator's own parser) and, when an
    artifact comes with it, point ``spec.artifact`` at where it will be kept
    (the manifest may then leave ``spec.artifact.uri`` out)."""
    if artifact is None:
        manifest = parse_manifest(manifest_text)
        name, version = manifest.metadata.name, manifest.metadata.version
        return Upload(manifest, manifest_text, f"{name}-{version}", None, None, None)
    document = _document(manifest_text)
    spec = document.get("spec")
    if not isinstance(spec, dict):
        parse_manifest(manifest_text)  # says what is wrong
        raise ManifestError(("spec: must be a mapping",))
    given = spec.get("artifact")
    field: dict[str, Any] = given if isinstance(given, dict) else {}
    digest = hashlib.sha256(artifact).hexdigest()
    # Validate everything but the artifact's place first: name and version
    # go into config names and object keys only once they are checked.
    spec["artifact"] = {**field, "uri": "config://pending-upload", "sha256": digest}
    checked = parse_manifest(yaml.safe_dump(document, sort_keys=False))
    name, version = checked.metadata.name, checked.metadata.version
    target_config: str | None = None
    target_key: str | None = None
    if len(artifact) <= CONFIG_LIMIT:
        target_config = f"{name}-{version}-artifact-{digest[:12]}"
        uri = f"config://{target_config}"
    else:
        safe = (filename or "model").replace("\\", "/").rsplit("/", 1)[-1]
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in safe)[:100]
        target_key = f"uploads/{version}/{safe.lstrip('.') or 'model'}"
        uri = f"s3://aiart-{name}/{target_key}"
    spec["artifact"]["uri"] = uri
    rewritten = yaml.safe_dump(document, sort_keys=False).encode()
    # Parsed again: what is stored is exactly what the operator will accept.
    return Upload(parse_manifest(rewritten), rewritten, f"{name}-{version}", target_config,
                  target_key, digest)


def _document(text: bytes) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    if not isinstance(document, dict):
        parse_manifest(text)  # raises with the parser's own words
        raise ManifestError(("manifest must be a mapping",))
    return document


def reference_problems(who: Principal, manifest: Manifest) -> list[str]:
    """What a manifest reaches beyond its own model, for a principal who is
    not an admin: another model's bucket, runs or aiart-built image. Config
    references are checked against the config's labels by the caller
    (``config_reference_problem``). Admins reach everything."""
    if who.role is Role.ADMIN:
        return []
    name = manifest.metadata.name
    problems = []
    artifact = manifest.spec.artifact
    if artifact is not None:
        ref = artifact.ref
        if isinstance(ref, S3Ref) and ref.bucket != bucket_for(name):
            problems.append(f"spec.artifact.uri: {artifact.uri} is outside model {name}'s "
                            f"bucket {bucket_for(name)}")
        if isinstance(ref, RunRef) and ref.model != name:
            problems.append(f"spec.artifact.uri: {artifact.uri} is a run of model "
                            f"{ref.model}, not of {name}")
    image = manifest.spec.image
    if image:
        parts = image_repository(image).split("/")
        if len(parts) >= 2 and parts[-2] == "aiart" and parts[-1] != name and not (
                parts[-1].startswith("runtime-")):
            problems.append(f"spec.image: {image} is model {parts[-1]}'s image, not {name}'s")
    return problems


def config_reference_problem(who: Principal, manifest: Manifest,
                             config: ConfigObject | None, artifact_of: str) -> str | None:
    """A ``config://`` artifact must be one of this model's artifacts
    (labelled ``<artifact_of>=<model>``) unless an admin asks."""
    artifact = manifest.spec.artifact
    if who.role is Role.ADMIN or artifact is None or not isinstance(artifact.ref, ConfigRef):
        return None
    name = manifest.metadata.name
    if config is None or config.labels.get(artifact_of) != name:
        return (f"spec.artifact.uri: config {artifact.ref.name} is not an artifact of model "
                f"{name} (labelled {artifact_of}={name})")
    return None


# The names aiart gives the keys it makes itself (a stream bridge's, made
# and removed with its stream): not made or revoked through the API.
RESERVED_KEY_PREFIX = "aiart-"


def key_view(key: ApiKey) -> dict[str, Any]:
    """A key as the API shows it: never its digest, never its secret."""
    return {"id": key.id, "name": key.name, "role": key.role.value,
            "models": list(key.models), "created": key.created,
            "managedByAiart": key.name.startswith(RESERVED_KEY_PREFIX)}


def key_request(body: bytes, taken: Iterable[str]) -> tuple[str, Role, list[str]]:
    """A new key's name, role and models from ``POST /keys``'s JSON body, or
    ValueError saying what is wrong. A viewer's or deployer's key only: an
    admin's is made on a manager (engine/policy.py API_KEY_ROLES)."""
    try:
        raw: Any = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the body must be JSON: {\"name\": ..., \"role\": ..., "
                         "\"models\": [...]}") from None
    if not isinstance(raw, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(raw) - {"name", "role", "models"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}: name, role, models")
    name, role, models = raw.get("name"), raw.get("role", Role.VIEWER.value), raw.get(
        "models", [])
    if not isinstance(name, str) or not KEY_NAME.match(name):
        raise ValueError("name: letters, digits, '.', '_' or '-', at most 63 characters")
    if name.startswith(RESERVED_KEY_PREFIX):
        raise ValueError(f"names beginning {RESERVED_KEY_PREFIX!r} are kept for the keys "
                         "aiart makes itself")
    if name in set(taken):
        raise ValueError(f"a key named {name!r} exists; revoke it first or choose another name")
    if role not in (Role.VIEWER.value, Role.DEPLOYER.value):
        raise ValueError(f"role must be viewer or deployer (not {role!r}): an admin's key is "
                         "made on a manager, with aiart keys create NAME --role admin")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ValueError("models must be a list of model names ([] or [\"*\"]: every model)")
    return name, Role(role), models
