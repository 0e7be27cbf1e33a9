"""The OpenAPI 3.1 document of aiart's REST API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from aiart import __version__


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


ERRORS = {"401": _error("no credential, or one that is unknown, revoked or invalid"),
          "403": _error("the credential's role or models do not allow this")}
PACKAGE_IMPORT = {"type": "object", "properties": {
    "name": {"type": "string"}, "version": {"type": "string"},
    "signer": {"type": "string", "description": "the key id that signed it; empty: unsigned"},
    "declared": {"type": "boolean"},
    "image": {"type": "string", "description": "where its image was put"},
    "package": {"type": "object", "description": "where it came from (the version's package)"},
    "message": {"type": "string"}}}
NAME = {"name": "name", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}


MODEL_LIST = {"type": "object", "properties": {"models": {
    "type": "array", "items": {"$ref": "#/components/schemas/Model"}}}}


JOB = {"type": "object", "properties": {
    **{k: {"type": "string"} for k in ("id", "model", "version", "config", "created",
                                       "createdBy", "input", "status", "message", "results")},
    **{k: {"type": ["integer", "null"]} for k in ("chunkRows", "rowsDone", "rowsKnown")}}}


IMAGE = {"type": "object", "properties": {
    "digest": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "size": {"type": ["integer", "null"]}, "created": {"type": "string"},
    "inUse": {"type": "boolean"}}}
EVENT = {"type": "object", "properties": {
    k: {"type": "string"} for k in ("at", "version", "status", "message")}}
KEY_FIELDS: dict[str, Any] = {
    **{k: {"type": "string"} for k in ("id", "name", "role", "created")},
    "models": {"type": "array", "items": {"type": "string"}},
    "managedByAiart": {"type": "boolean"}}
KEY = {"type": "object", "properties": KEY_FIELDS}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "aiart", "version": __version__,
                 "description": "Deploy and inspect models. Every change is a labelled "
                                "Docker config that aiart's operator acts on."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": {
            "/models": {
                "get": {"summary": "Models with their versions and status",
                        "responses": {"200": {"description": "the models the caller may see",
                                              "content": {"application/json": {
                                                  "schema": MODEL_LIST}}},
                                      **ERRORS}},
                "post": {"summary": "Deploy a version: a manifest and its artifact",
                         "requestBody": {"required": True, "content": {"multipart/form-data": {
                             "schema": {"type": "object", "required": ["manifest"], "properties": {
                                 "manifest": {"type": "string", "format": "binary",
                                              "description": "the aiart/v1 manifest (YAML)"},
                                 "artifact": {"type": "string", "format": "binary",
                                              "description": "the model file; spec.artifact "
                                              "then points to where aiart keeps it"}}}}}},
                         "responses": {"202": {"description": "declared; the operator builds "
                                                              "and deploys it"},
                                       "400": _error("the manifest is not valid (problems "
                                                     "lists each, with its field)"),
                                       "409": _error("this version exists"),
                                       "413": _error("too large"), **ERRORS}},
            },
            "/models/{name}": {
                "parameters": [NAME],
                "get": {"summary": "One model", "responses": {
                    "200": {"description": "the model", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Model"}}}},
                    "404": _error("no such model"), **ERRORS}},
                "delete": {"summary": "Remove every version of a model", "responses": {
                    "200": {"description": "the configs removed"},
                    "404": _error("no such model"), **ERRORS}},
            },
            "/models/{name}/versions/{version}": {
                "parameters": [NAME, {"name": "version", "in": "path", "required": True,
                                      "schema": {"type": "string"}}],
                "delete": {"summary": "Remove one version", "responses": {
                    "200": {"description": "the configs removed"},
                    "404": _error("no such version"), **ERRORS}},
            },
            "/models/{name}/logs": {
                "parameters": [NAME,
                               {"name": "tail", "in": "query", "schema": {
                                   "type": "integer", "minimum": 1, "maximum": 10000}},
                               {"name": "version", "in": "query", "schema": {"type": "string"}}],
                "get": {"summary": "The last lines of a version's log (default: current)",
                        "responses": {"200": {"description": "log lines"},
                                      "404": _error("no such model or service"), **ERRORS}},
            },
            "/models/{name}/metrics": {
                "parameters": [NAME, {"name": "minutes", "in": "query", "schema": {
                    "type": "integer", "minimum": 1, "maximum": 1440}}],
                "get": {"summary": "Requests/s, server errors/s and latency (p50, p99) over the "
                                   "last minutes (default 60), from Prometheus",
                        "responses": {"200": {"description": "series of [epoch, value|null]"},
                                      "404": _error("no such model"),
                                      "503": _error("Prometheus is not configured or away"),
                                      **ERRORS}},
            },
            "/models/{name}/metadata": {
                "parameters": [NAME, {"name": "version", "in": "query",
                                      "schema": {"type": "string"}}],
                "get": {"summary": "The model's protocol metadata, through the gateway with the "
                                   "caller's credential",
                        "responses": {"200": {"description": "the model's answer, as it is"},
                                      **ERRORS}},
            },
            "/models/{name}/infer": {
                "parameters": [NAME, {"name": "version", "in": "query",
                                      "schema": {"type": "string"}}],
                "post": {"summary": "An inference call passed to the model through the gateway "
                                    "with the caller's credential (the dashboard's playground)",
                         "responses": {"200": {"description": "the model's answer, as it is"},
                                       "413": _error("over 4 MiB"), **ERRORS}},
            },
            "/models/{name}/runs": {
                "parameters": [NAME],
                "get": {"summary": "Training runs in the model's bucket, with metrics and params",
                        "responses": {"200": {"description": "the runs, newest first"},
                                      **ERRORS}},
                "post": {"summary": "Store a training run (multipart: model, metrics, params)",
                         "responses": {"201": {"description": "the run and its run:// URI"},
                                       "413": _error("over the upload limit"), **ERRORS}},
            },
            "/models/{name}/objects": {
                "parameters": [NAME, {"name": "prefix", "in": "query",
                                      "schema": {"type": "string"}}],
                "get": {"summary": "Keys in the model's bucket (its deployers)",
                        "responses": {"200": {"description": "the first 1,000 keys"},
                                      **ERRORS}},
            },
            "/models/{name}/objects/{key}": {
                "parameters": [NAME, {"name": "key", "in": "path", "required": True,
                                      "schema": {"type": "string"}}],
                "get": {"summary": "One object of the model's bucket, as a download",
                        "responses": {"200": {"description": "its bytes"},
                                      "404": _error("no such object"), **ERRORS}},
            },
            "/models/{name}/events": {
                "parameters": [NAME],
                "get": {"summary": "What the operator recorded for the model's versions (each "
                                   "status and its message), newest first, at most 200",
                        "responses": {"200": {"description": "the events", "content": {
                            "application/json": {"schema": {"type": "object", "properties": {
                                "name": {"type": "string"},
                                "events": {"type": "array", "items": EVENT}}}}}},
                            **ERRORS}},
            },
            "/models/{name}/images": {
                "parameters": [NAME],
                "get": {"summary": "The model's images in aiart's registry: tags, digest, size, "
                                   "created, and whether anything runs it",
                        "responses": {"200": {"description": "newest first", "content": {
                            "application/json": {"schema": {"type": "object", "properties": {
                                "name": {"type": "string"}, "repository": {"type": "string"},
                                "images": {"type": "array", "items": IMAGE}}}}}},
                            "503": _error("the registry is not configured or away"),
                            **ERRORS}},
            },
            "/models/{name}/images/{digest}": {
                "parameters": [NAME, {"name": "digest", "in": "path", "required": True,
                                      "schema": {"type": "string",
                                                 "pattern": "^sha256:[0-9a-f]{64}$"}}],
                "delete": {"summary": "Remove an image nothing runs (every tag of it) "
                                      "(deployers of the model)",
                           "responses": {"200": {"description": "removed"},
                                         "404": _error("the model has no such image"),
                                         "409": _error("in use"), **ERRORS}},
            },
            "/models/{name}/package": {
                "parameters": [NAME, {"name": "version", "in": "query",
                                      "schema": {"type": "string"},
                                      "description": "default: the version serving"}],
                "get": {"summary": "One version as a model package (docs/packages.md), signed "
                                   "with the site's key when it has one (deployers of the "
                                   "model)",
                        "responses": {"200": {
                            "description": "the package; X-Aiart-Package-Signer: its key id, "
                                           "or unsigned",
                            "content": {"application/x-tar": {"schema": {
                                "type": "string", "format": "binary"}}}},
                            "409": _error("the API may not read the version's model file"),
                            "503": _error("the registry or the object store is away"),
                            **ERRORS}},
            },
            "/packages": {
                "post": {"summary": "Import a model package: checked against the swarm's "
                                    "trusted keys, its image put in aiart's registry, its "
                                    "version declared (deployers of the model it holds)",
                         "parameters": [{"name": "allowUnsigned", "in": "query",
                                         "schema": {"type": "boolean"},
                                         "description": "take an unsigned package (admins)"}],
                         "requestBody": {"required": True, "content": {"application/x-tar": {
                             "schema": {"type": "string", "format": "binary"}}}},
                         "responses": {
                             "201": {"description": "declared", "content": {
                                 "application/json": {"schema": PACKAGE_IMPORT}}},
                             "200": {"description": "declared so already: nothing to do",
                                     "content": {"application/json": {
                                         "schema": PACKAGE_IMPORT}}},
                             "400": _error("a changed, unsigned or untrusted package, or a "
                                           "version declared here with another manifest"),
                             "413": _error("larger than AIART_API_MAX_UPLOAD_BYTES"),
                             **ERRORS}},
            },
            "/models/{name}/rollout/{action}": {
                "parameters": [NAME, {"name": "action", "in": "path", "required": True,
                                      "schema": {"enum": ["promote", "abort"]}}],
                "post": {"summary": "Promote or abort the model's rollout in progress",
                         "responses": {
                             "202": {"description": "the operator acts at its next pass"},
                             "404": _error("no such model or action"),
                             "409": _error("no rollout in progress"), **ERRORS}},
            },
            "/keys": {
                "get": {"summary": "Every API key's record, never its secret (admins)",
                        "responses": {"200": {"description": "the keys", "content": {
                            "application/json": {"schema": {"type": "object", "properties": {
                                "keys": {"type": "array", "items": KEY}}}}}}, **ERRORS}},
                "post": {"summary": "Make a viewer's or deployer's key (admins); its text is "
                                    "in this answer alone. An admin's key is made on a manager "
                                    "(aiart keys create)",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"type": "object", "required": ["name"],
                                        "properties": {
                                 "name": {"type": "string"},
                                 "role": {"enum": ["viewer", "deployer"], "default": "viewer"},
                                 "models": {"type": "array", "items": {"type": "string"},
                                            "description": "default: every model"}}}}}},
                         "responses": {"201": {"description": "the key, shown once", "content": {
                             "application/json": {"schema": {"type": "object", "properties": {
                                 **KEY_FIELDS, "key": {"type": "string"}}}}}},
                                       "400": _error("a bad name, role or model; a name taken"),
                                       **ERRORS}},
            },
            "/keys/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "delete": {"summary": "Revoke a viewer's or deployer's key (admins)",
                           "responses": {"200": {"description": "the key revoked"},
                                         "404": _error("no such key"), **ERRORS}},
            },
            "/jobs": {
                "get": {"summary": "Batch jobs (of the models the caller may see)",
                        "parameters": [{"name": "model", "in": "query",
                                        "schema": {"type": "string"}}],
                        "responses": {"200": {"description": "the jobs", "content": {
                            "application/json": {"schema": {"type": "object", "properties": {
                                "jobs": {"type": "array", "items": JOB}}}}}}, **ERRORS}},
                "post": {"summary": "Score the files under a prefix of the model's bucket "
                                    "with its own image (docs/batch.md)",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"type": "object", "required": ["model", "input"],
                                        "properties": {
                                 "model": {"type": "string"},
                                 "version": {"type": "string", "description": "default: the "
                                             "version serving when the job starts"},
                                 "input": {"type": "string",
                                           "description": "s3://aiart-<model>/<prefix>"},
                                 "chunkRows": {"type": "integer", "minimum": 1}}}}}},
                         "responses": {"202": {"description": "declared; the operator runs it",
                                               "content": {"application/json": {
                                                   "schema": JOB}}},
                                       "400": _error("not a job, or no input there"),
                                       "404": _error("no such model or version"), **ERRORS}},
            },
            "/jobs/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "get": {"summary": "One batch job", "responses": {
                    "200": {"description": "the job", "content": {"application/json": {
                        "schema": JOB}}},
                    "404": _error("no such job"), **ERRORS}},
                "delete": {"summary": "Remove a job: stopped if it runs; its results stay",
                           "responses": {"200": {"description": "the config removed"},
                                         "404": _error("no such job"), **ERRORS}},
            },
        },
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an aiart API key or an OIDC access token"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"},
                    "problems": {"type": "array", "items": {"type": "string"}}}},
                "Version": {"type": "object", "properties": {
                    k: {"type": "string"} for k in (
                        "version", "config", "configId", "created", "runtime", "status",
                        "message", "endpoint", "image", "replicas")} | {
                    "current": {"type": "boolean"},
                    "alerts": {"type": "array", "items": {"type": "string"},
                               "description": "names of the version's firing alerts"},
                    "rollout": {"type": "object", "nullable": True,
                                "description": "where its rollout stands (docs/rollouts.md)",
                                "properties": {k: {"type": "string"} for k in (
                                    "phase", "stable", "step", "status")}},
                    "scale": {"type": "object", "nullable": True,
                              "description": "a scalable version's replicas wanted and why "
                                             "(docs/scaling.md)",
                              "properties": {k: {"type": "string"} for k in (
                                  "replicas", "status")}},
                    "package": {"type": "object", "nullable": True,
                                "description": "imported from a model package: who signed "
                                               "it and where it was built (docs/packages.md)",
                                "properties": {k: {"type": "string"} for k in (
                                    "signer", "keyName", "package", "image",
                                    "artifactSha256", "sourceRun", "runtime", "libraries",
                                    "declaredAt", "importedAt")}}}},
                "Model": {"type": "object", "properties": {
                    "name": {"type": "string"}, "status": {"type": "string"},
                    "endpoint": {"type": "string"},
                    "versions": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Version"}}}},
            },
        },
    }
