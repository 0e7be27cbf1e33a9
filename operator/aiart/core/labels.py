"""The ``aiart.*`` label names: the operator's whole vocabulary on Docker objects."""

from typing import Final

MODEL: Final = "aiart.model"
MANAGED_BY: Final = "aiart.managed-by"
MANAGED_BY_VALUE: Final = "aiart"
OWNER: Final = "aiart.owner"
# A stream bridge's service (spec.streams): the model it feeds and the stream.
STREAM_OF: Final = "aiart.stream-of"
STREAM: Final = "aiart.stream"
# A stream binding: a config of its own holding one stream (as under
# spec.streams), for the model this label names (docs/streams.md).
STREAM_BINDING: Final = "aiart.stream-binding"
VERSION: Final = "aiart.version"
# A batch job's config (named aiart-job-<id>) and service: the job's id, its
# model, and the version it runs (written by the operator when the job
# named none: the version serving then, kept for the job's whole life).
JOB: Final = "aiart.job"
JOB_OF: Final = "aiart.job.model"
JOB_VERSION: Final = "aiart.job.version"
SPEC_HASH: Final = "aiart.spec-hash"
# A hash of the rendered task template alone: equal means an update changes
# labels only, and no task restarts. Read from the label because the engine
# returns specs with defaults filled in, which no longer hash alike.
TASK_HASH: Final = "aiart.task-hash"
# The tag a service's image was pinned from: the service runs the image by
# digest, so that a later push to the same tag cannot change what it runs.
IMAGE_TAG: Final = "aiart.image-tag"
ROLE: Final = "aiart.role"
# On configs the API creates: an uploaded artifact's model, and who declared
# a version (the caller's subject).
ARTIFACT_OF: Final = "aiart.artifact-of"
CREATED_BY: Final = "aiart.created-by"
# API key records (operator/aiart/auth/keystore.py): the key's id, with
# aiart.apikey.name and aiart.apikey.role beside it.
API_KEY: Final = "aiart.apikey"
API_KEY_NAME: Final = "aiart.apikey.name"
API_KEY_ROLE: Final = "aiart.apikey.role"
# A key record's config is named this and the key's id.
API_KEY_CONFIG_PREFIX: Final = "aiart-apikey-"
# A public key whose model packages this swarm imports (cli/packages.py):
# its id, with aiart.package-key.name beside it; the config's data is the
# key in PEM, and its name this and the id.
# On a version imported from a model package: where it came from, as JSON
# (core/packages.py origin).
PACKAGE: Final = "aiart.package"
PACKAGE_KEY: Final = "aiart.package-key"
PACKAGE_KEY_NAME: Final = "aiart.package-key.name"
PACKAGE_KEY_CONFIG_PREFIX: Final = "aiart-package-key-"
DELETE_BUCKET: Final = "aiart.store.delete-with-model"
# On a version's service while it rolls out: "canary" or "shadow"; Prometheus
# puts it on the version's series as the label ``rollout``
# (monitoring/prometheus.yml), so that a shadow's figures are told apart.
ROLLOUT_ROLE: Final = "aiart.rollout-role"
# The port Prometheus scrapes a model's tasks on (monitoring/prometheus.yml).
METRICS_PORT: Final = "aiart.metrics.port"

# A scalable version's replicas as the autoscaler decided them (on its
# config: the decision outlives an operator restart), when that number last
# changed, since when a burst has been seen, and what kind of reason it
# had (core/scaling.py).
SCALE_REPLICAS: Final = "aiart.scale.replicas"
SCALE_CHANGED: Final = "aiart.scale.changed"
SCALE_PANIC: Final = "aiart.scale.panic-since"
SCALE_KIND: Final = "aiart.scale.why"
# When an idle version, whose requests the gateway now sends the activator,
# may go to zero (core/scaling.py paced).
SCALE_SLEEP_AT: Final = "aiart.scale.sleep-at"
# When a version at zero was last woken: its requests still go to the
# activator for a while (core/scaling.py WAKE_HOLD_SECONDS).
SCALE_WOKEN_AT: Final = "aiart.scale.woken-at"

STATUS: Final = "aiart.status"
STATUS_PREFIX: Final = "aiart.status."
STATUS_MESSAGE: Final = "aiart.status.message"
STATUS_IMAGE: Final = "aiart.status.image"
STATUS_ENDPOINT: Final = "aiart.status.endpoint"
STATUS_REPLICAS: Final = "aiart.status.replicas"
STATUS_CURRENT: Final = "aiart.status.current"
STATUS_INPUTS: Final = "aiart.status.inputs"
# "true" once the version's present tasks answered through the gateway (a
# new deploy's status drops it): a ready image is judged against the
# inference contract only before, so that the gateway's 404s while it
# rebuilds its routes are never taken for the image's.
STATUS_ANSWERED: Final = "aiart.status.answered"
# Where a version's rollout stands, in words (core/rollout.py keeps its state
# in aiart.rollout.* labels).
STATUS_ROLLOUT: Final = "aiart.status.rollout"
# A batch job's rows scored, of the rows of the files it has read so far.
STATUS_ROWS_DONE: Final = "aiart.status.rows-done"
STATUS_ROWS_KNOWN: Final = "aiart.status.rows-known"
# Firing alerts' names, comma-separated; written by the alert watcher.
STATUS_ALERTS: Final = "aiart.status.alerts"
# Why a scalable version has the replicas it has; written by the autoscaler.
STATUS_SCALE: Final = "aiart.status.scale"

# Labels on runtime images, so that a runtime image can be found by what is
# inside it rather than by a name someone has to remember.
RUNTIME: Final = "aiart.runtime"
RUNTIME_RECIPE: Final = "aiart.runtime.recipe"
# The libraries it runs models with, as pinned (runtime.Dockerfile.j2).
RUNTIME_LIBRARIES: Final = "aiart.runtime.libraries"
