"""Every ``AIART_*`` variable aiart's programs read, declared once.

Settings come in groups, one per part that reads them (the operator, the
object store, the catalog, the auth service and the API, the engine proxy,
the store gateway, the CLI). Each field names its variable, its default and
what it does; ``from_env`` reads the variables of a group and nothing else
does: no other module of aiart reads the environment. A secret's ``_FILE``
twin (the path of a Docker secret) wins over the variable itself, so that a
key never has to sit in a service's environment.

docs/operations.md's table of variables is generated from these
declarations (``python -m aiart.core.settings``; a test keeps the page in
step). The model servers' own variables are declared beside them
(``aiart_runtime.settings.ServerSettings``) and listed in the same table.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from aiart_runtime.settings import ServerSettings
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo


class SettingsError(ValueError):
    """A variable whose value cannot be used; the message names it."""


def setting(variable: str, default: Any, doc: str, *, secret: bool = False) -> Any:
    """A field read from ``variable``; ``secret``: also from ``<variable>_FILE``."""
    return Field(default=default, description=doc, repr=not secret,
                 json_schema_extra={"env": variable, "secret": secret})


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


# ``a, b,c`` -> ("a", "b", "c"); empty -> ().
CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]


class EnvSettings(BaseModel):
    """A group of settings; ``program`` says who reads it (for the docs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    program: ClassVar[str] = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The group from ``env`` (the process's environment by default).

        An empty variable counts as unset, except for text settings, where
        empty is a value (``AIART_OIDC_ROLE_PREFIX=`` means no prefix)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            variable, secret = _declared(field)
            if not variable:
                continue
            path = env.get(f"{variable}_FILE", "").strip() if secret else ""
            if path:
                try:
                    values[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise SettingsError(f"{variable}_FILE: {exc}") from None
            elif variable in env and (env[variable].strip() or field.annotation in (str, "str")):
                # Blanks around a value are never part of it.
                values[name] = env[variable].strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                wrong = cls.model_fields.get(str(error["loc"][0])) if error["loc"] else None
                variable = _declared(wrong)[0] if wrong else ""
                problems.append(f"{variable or cls.__name__}: {error['msg']}")
            raise SettingsError("; ".join(problems)) from None


def _declared(field: FieldInfo) -> tuple[str, bool]:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("env", "")), bool(extra.get("secret", False))


_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class LogSettings(EnvSettings):
    program: ClassVar[str] = "every service"

    level: str = setting("AIART_LOG_LEVEL", "INFO", "Log level (DEBUG, INFO, WARNING, ERROR).")


class OperatorSettings(EnvSettings):
    program: ClassVar[str] = "operator"

    registry: str = setting("AIART_REGISTRY", "localhost:5000",
                            "The registry model images are pushed to and pulled from.")
    network: str = setting("AIART_NETWORK", "aiart-models",
                           "The overlay network of model services and the gateway.")
    entrypoint: str = setting("AIART_ENTRYPOINT", "web",
                              "Traefik's entrypoints for model routes (comma-separated).")
    gateway_host: str = setting(
        "AIART_GATEWAY_HOST", "",
        "The one host name model routes answer to (the site's domain); empty: any.")
    public_url: str = setting("AIART_PUBLIC_URL", "http://localhost:8080",
                              "The gateway as users reach it (endpoints in status labels).")
    gateway_url: str = setting(
        "AIART_GATEWAY_URL", "",
        "The gateway as the operator reaches it for its probes (inside the stack, Traefik's "
        "name on the overlay network); empty: the public URL.")
    auth_url: str = setting("AIART_AUTH_URL", "http://auth:8000",
                            "The forwardAuth service that guards model routes, as Traefik "
                            "reaches it.")
    auth_ca: str = setting("AIART_AUTH_CA", "",
                           "For an https auth URL: the CA file, as Traefik's container has it, "
                           "that the auth service's certificate chains to.")
    resync_seconds: float = setting("AIART_RESYNC_SECONDS", 30.0,
                                    "How often every model is looked at without an event.")
    # A pass that builds an image holds its worker for the build (seconds to
    # minutes): with 4, four builds at once left every other model's pass
    # (a rollout's step, a status) waiting; the other passes mostly wait on
    # the engine's API, so more of them cost little.
    workers: int = setting("AIART_WORKERS", 8, "Models reconciled at once (a pass that builds "
                           "an image holds one for the build).")
    builds: int = setting("AIART_BUILDS", 2, "Images built at once; a pass whose image waits "
                          "for its turn holds its worker meanwhile.")
    default_sklearn: str = setting(
        "AIART_DEFAULT_SKLEARN", "1.9.1",
        "The scikit-learn version for a pickle that does not say its own.")
    base_image: str = setting("AIART_BASE_IMAGE", "",
                              "The Python image runtimes are built on (hack/images.sh).")
    h2o_runtime_image: str = setting(
        "AIART_H2O_RUNTIME_IMAGE", "",
        "The prebuilt H2O runtime (built where H2O's jar is at hand); empty: no h2o models.")
    python_version: str = setting("AIART_PYTHON_VERSION", "3.11",
                                  "The Python version of the base image.")
    cache_dir: str = setting("AIART_CACHE_DIR", "/var/cache/aiart",
                             "Where the operator keeps downloaded wheels for image builds.")
    build_timeout_seconds: float = setting("AIART_BUILD_TIMEOUT_SECONDS", 1800.0,
                                           "The longest an image build may take.")
    failed_task_threshold: int = setting(
        "AIART_FAILED_TASK_THRESHOLD", 3,
        "A model whose tasks failed this many times with none running is Failed.")
    model_store_endpoint: str = setting(
        "AIART_S3_MODEL_ENDPOINT", "",
        "The store gateway as model containers reach it; with the gateway's key file, "
        "models that ask get keys of their own (empty: no model gets the store).")
    model_store_secure: bool = setting(
        "AIART_S3_MODEL_SECURE", False, "Whether models speak HTTPS to the store gateway.")
    metrics_port: int = setting("AIART_METRICS_PORT", 9100,
                                "Where the operator serves its Prometheus metrics (0: nowhere).")
    alertmanager_url: str = setting(
        "AIART_ALERTMANAGER_URL", "",
        "Alertmanager, whose active alerts become aiart.status.alerts labels (empty: none).")
    prometheus_url: str = setting(
        "AIART_PROMETHEUS_URL", "",
        "Prometheus, which canary rollouts' gates read (with the monitoring password); "
        "empty: no gate can be read, and canaries hold at their first step.")
    traffic_port: int = setting(
        "AIART_TRAFFIC_PORT", 9101,
        "Where the operator serves the gateway the routes of rollouts in progress and of "
        "scalable models (Traefik's HTTP provider), and the activator's wake calls; 0: "
        "nowhere, and rollouts move no traffic and a model at zero stays there.")
    activator_url: str = setting(
        "AIART_ACTIVATOR_URL", "http://activator:8090",
        "The activator, as the gateway reaches it: where requests for a model at zero "
        "replicas are held while it wakes (docs/scaling.md).")
    activator_grpc_url: str = setting(
        "AIART_ACTIVATOR_GRPC_URL", "h2c://activator:8091",
        "The activator's gRPC port, as the gateway reaches it (HTTP/2 without TLS).")
    scale_interval_seconds: float = setting(
        "AIART_SCALE_INTERVAL_SECONDS", 2.0,
        "How often the autoscaler reads the load of scalable models (the gateway's "
        "metrics, in Prometheus, which reads them every 2 s).")
    alert_poll_seconds: float = setting("AIART_ALERT_POLL_SECONDS", 5.0,
                                        "How often Alertmanager is read.")
    alertmanager_password_file: str = setting(
        "AIART_ALERTMANAGER_PASSWORD_FILE", "",
        "The file holding the monitoring password (user aiart); empty: none sent.")
    registry_password_file: str = setting(
        "AIART_REGISTRY_PASSWORD_FILE", "",
        "The file holding the registry's password (user aiart) for pushes and model "
        "services' pulls; empty: the registry asks for none.")
    model_otlp_endpoint: str = setting(
        "AIART_MODEL_OTLP_ENDPOINT", "",
        "Where model servers send their traces (OTLP over HTTP); empty: no tracing.")
    model_constraints: CommaList = setting(
        "AIART_MODEL_CONSTRAINTS", (),
        "Swarm placement constraints for every model task (comma-separated), e.g. "
        "node.role==worker.")
    stream_image: str = setting(
        "AIART_STREAM_IMAGE", "",
        "The image of stream bridges (aiart's own: the operator's); empty: spec.streams "
        "are not run here (a model that has them says so).")
    stream_network: str = setting(
        "AIART_STREAM_NETWORK", "aiart-internal",
        "The network stream bridges are on: the broker's and the gateway's, never a "
        "model's.")
    broker_secret: str = setting(
        "AIART_BROKER_SECRET", "aiart-broker-password",
        "The Docker secret holding the broker's password, handed to stream bridges.")
    gateway_only: bool = setting(
        "AIART_GATEWAY_ONLY", True,
        "Whether aiart's model servers answer inference only to requests that came "
        "through the gateway (a per-version token its routes add, made with the probe "
        "key; without that key, off).")

    @model_validator(mode="before")
    @classmethod
    def _probe_through_the_public_url(cls, data: Any) -> Any:
        # No gateway URL of its own: the operator probes where users call.
        if isinstance(data, dict) and not data.get("gateway_url"):
            data = {**data, "gateway_url": data.get("public_url", "http://localhost:8080")}
        return data

    @field_validator("public_url", "gateway_url", "auth_url", "alertmanager_url",
                     "prometheus_url", "activator_url", "activator_grpc_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @field_validator("workers", "builds")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        # None would never reconcile or never build: a typo, not a choice.
        if value < 1:
            raise ValueError(f"must be at least 1, not {value}")
        return value

    @field_validator("gateway_host")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        # It goes into Traefik rules as is.
        value = value.strip().lower()
        if value and not _HOST.match(value):
            raise ValueError(f"must be a DNS name, not {value!r}")
        return value


class StoreSettings(EnvSettings):
    """The object store: MinIO or any S3 server (empty endpoint: none)."""

    program: ClassVar[str] = "operator, API, store gateway, CLI"

    endpoint: str = setting("AIART_S3_ENDPOINT", "",
                            "The object store, host:port (an https:// prefix turns TLS on); "
                            "empty: no store.")
    access_key: str = setting("AIART_S3_ACCESS_KEY", "", "The store's access key.", secret=True)
    secret_key: str = setting("AIART_S3_SECRET_KEY", "", "The store's secret key.", secret=True)
    secure: bool = setting("AIART_S3_SECURE", False, "Whether the store speaks HTTPS.")
    region: str = setting("AIART_S3_REGION", "us-east-1", "The store's region.")
    read_timeout: float = setting("AIART_S3_TIMEOUT_SECONDS", 15.0,
                                  "How long a store request may take.")
    max_object_bytes: int = setting("AIART_S3_MAX_OBJECT_BYTES", 2 * 1024**3,
                                    "The largest artifact read from the store.")
    ca_file: str = setting("SSL_CERT_FILE", "",
                           "The CAs an HTTPS store's certificate is checked against; empty: "
                           "certifi's.")
    connect_timeout: float = 3.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        settings = super().from_env(env)
        scheme, _, rest = settings.endpoint.strip().partition("://")
        if not rest:
            return settings
        return settings.model_copy(update={"endpoint": rest.rstrip("/"),
                                           "secure": settings.secure or scheme == "https"})


class CatalogSettings(EnvSettings):
    program: ClassVar[str] = "operator, CLI"

    url: str = setting("AIART_CATALOG_URL", "",
                       "Empty or docker: the catalog in the swarm's configs; mongodb://... "
                       "(a password: use the _FILE twin): MongoDB.", secret=True)
    database: str = setting("AIART_CATALOG_DATABASE", "aiart", "The MongoDB database.")


class OIDCSettings(EnvSettings):
    program: ClassVar[str] = "auth service, API"

    issuer: str = setting("AIART_OIDC_ISSUER", "",
                          "The OIDC issuer whose tokens are taken; empty: OIDC off.")
    audience: str = setting("AIART_OIDC_AUDIENCE", "",
                            "The audience tokens must be for (required with an issuer).")
    jwks_url: str = setting("AIART_OIDC_JWKS_URL", "",
                            "The issuer's key set; empty: Keycloak's path under the issuer.")
    clients: CommaList = setting("AIART_OIDC_CLIENTS", (),
                                 "The clients (azp) whose tokens are taken; empty: the audience.")
    roles_claim: str = setting("AIART_OIDC_ROLES_CLAIM", "realm_access.roles",
                               "Where a token's roles are (a dotted path).")
    role_prefix: str = setting("AIART_OIDC_ROLE_PREFIX", "aiart:",
                               "The prefix of aiart's roles among a token's roles.")
    # The dashboard's sign-in (operator/aiart/ui/oidc.py): the client the API
    # signs people in as; its tokens pass the checks above like any, so it
    # must be one of the clients.
    ui_client_id: str = setting(
        "AIART_OIDC_UI_CLIENT_ID", "",
        "The OIDC client the dashboard signs people in as (authorization code with PKCE); "
        "empty: sign-in with an API key only.")
    ui_client_secret_file: str = setting(
        "AIART_OIDC_UI_CLIENT_SECRET_FILE", "",
        "The file holding that client's secret (a confidential client); empty: a public one.")
    ui_scopes: str = setting("AIART_OIDC_UI_SCOPES", "openid",
                             "The scopes the dashboard asks for at sign-in, separated by spaces.")
    ui_discovery_url: str = setting(
        "AIART_OIDC_UI_DISCOVERY_URL", "",
        "The provider's discovery document; empty: the issuer's "
        "/.well-known/openid-configuration.")

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @field_validator("roles_claim")
    @classmethod
    def _roles_claim(cls, value: str) -> str:
        return value.strip() or "realm_access.roles"


class ProbeSettings(EnvSettings):
    """The operator's probes of a closed model version carry an HMAC of the
    model and version under a key only the operator and the auth service
    hold (a Docker secret). It opens that one version's routes and nothing
    else, so it is no platform credential; the gateway removes it before the
    model (render.CREDENTIAL_HEADERS)."""

    program: ClassVar[str] = "operator, auth service"

    key_file: str = setting("AIART_PROBE_KEY_FILE", "/run/secrets/aiart-probe-key",
                            "The key of the operator's probe tokens.")


class ServiceSettings(EnvSettings):
    """The auth service and the API: how they serve, and what they check."""

    program: ClassVar[str] = "auth service, API"

    auth_port: int = setting("AIART_AUTH_PORT", 8000, "The auth service's port.")
    api_port: int = setting("AIART_API_PORT", 8000, "The API's port.")
    tls_cert_file: str = setting(
        "AIART_INTERNAL_TLS_CERT_FILE", "",
        "The certificate both serve HTTPS with (aiart's internal CA); empty: plain HTTP.")
    tls_key_file: str = setting("AIART_INTERNAL_TLS_KEY_FILE", "",
                                "Its key (with the certificate or not at all).")
    key_refresh_seconds: float = setting("AIART_AUTH_REFRESH_SECONDS", 1.0,
                                         "How often the API keys are read from the swarm.")
    max_upload_bytes: int = setting("AIART_API_MAX_UPLOAD_BYTES", 512 * 1024**2,
                                    "The largest artifact the API takes in one upload.")
    api_gateway_url: str = setting(
        "AIART_API_GATEWAY_URL", "http://traefik:81",
        "Where the API passes the dashboard's inference calls, with the caller's own "
        "credential: the gateway's internal entrypoint, so that routes and keys are the "
        "same as for any caller.")
    api_prometheus_url: str = setting(
        "AIART_API_PROMETHEUS_URL", "",
        "Prometheus, which the API reads a model's request rate, errors and latency from "
        "(GET /api/v1/models/NAME/metrics, the dashboard's charts); empty: none.")
    api_monitoring_password_file: str = setting(
        "AIART_API_MONITORING_PASSWORD_FILE", "",
        "The file holding the monitoring password (user aiart), to read Prometheus.")
    api_registry_url: str = setting(
        "AIART_API_REGISTRY_URL", "",
        "Where the API reads a model's images and removes unused ones: aiart's registry, "
        "over HTTPS (in the stack https://registry:5000); empty: no images shown.")
    api_registry_password_file: str = setting(
        "AIART_API_REGISTRY_PASSWORD_FILE", "",
        "The file holding the registry's password (user aiart), for the API.")
    api_registry_ca_file: str = setting(
        "AIART_API_REGISTRY_CA_FILE", "",
        "The CA the registry's certificate is checked against (aiart's internal CA); "
        "empty: the system's.")
    api_package_key_file: str = setting(
        "AIART_API_PACKAGE_KEY_FILE", "",
        "The site's Ed25519 private key (PEM, aiart packages key create) that signs the "
        "model packages exported through the API and the dashboard; empty: they are "
        "exported unsigned.")

    def internal_tls(self) -> tuple[str | None, str | None]:
        """The certificate and key files for uvicorn: both, or neither."""
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("AIART_INTERNAL_TLS_CERT_FILE and AIART_INTERNAL_TLS_KEY_FILE "
                                "go together")
        return (self.tls_cert_file, self.tls_key_file) if self.tls_cert_file else (None, None)


class EngineProxySettings(EnvSettings):
    program: ClassVar[str] = "engine proxy"

    sockets: str = setting("AIART_ENGINE_PROXY_SOCKETS", "",
                           "client=path, ...: the socket served to each client (auth, api, "
                           "gateway, monitoring).")
    engine_socket: str = setting("AIART_ENGINE_SOCKET", "/var/run/docker.sock",
                                 "The engine's own socket.")


class StoreGatewaySettings(EnvSettings):
    program: ClassVar[str] = "store gateway, operator"

    port: int = setting("AIART_STORE_GATEWAY_PORT", 9000, "The store gateway's port.")
    key_file: str = setting(
        "AIART_STORE_GATEWAY_KEY_FILE", "",
        "The file holding the gateway's key, which every model's store keys derive from; "
        "the operator needs it to give models keys.")


class ActivatorSettings(EnvSettings):
    program: ClassVar[str] = "activator"

    port: int = setting("AIART_ACTIVATOR_PORT", 8090, "The activator's port (HTTP).")
    grpc_port: int = setting("AIART_ACTIVATOR_GRPC_PORT", 8091,
                             "The activator's port for gRPC calls (h2c).")
    operator_url: str = setting(
        "AIART_OPERATOR_URL", "http://operator:9101",
        "Where the activator asks the operator to wake a model at zero (its traffic port).")
    max_body_bytes: int = setting(
        "AIART_ACTIVATOR_MAX_BODY_BYTES", 64 * 1024 * 1024,
        "The largest request the activator holds while a model wakes (held in memory).")


class StreamSettings(EnvSettings):
    """What a stream's bridge reads (aiart/streams/bridge.py); the operator
    sets the stream's own when it creates the bridge's service."""

    program: ClassVar[str] = "stream bridges"

    model: str = setting("AIART_STREAM_MODEL", "", "The model a bridge feeds.")
    stream: str = setting("AIART_STREAM", "",
                          "The stream a bridge runs, as JSON: an entry of the manifest's "
                          "spec.streams.")
    broker: str = setting("AIART_BROKER_ADDRESS", "broker:1883",
                          "The MQTT broker, host:port.")
    broker_user: str = setting("AIART_BROKER_USER", "aiart", "The broker's user.")
    broker_password: str = setting("AIART_BROKER_PASSWORD", "", "The broker's password.",
                                   secret=True)
    gateway_url: str = setting(
        "AIART_STREAM_GATEWAY_URL", "http://traefik:81",
        "Where a bridge calls the model: the gateway's internal entrypoint, so that "
        "routes, versions and keys are the same as for any caller.")
    api_key: str = setting("AIART_STREAM_API_KEY", "",
                           "The bridge's own API key for its model.", secret=True)
    client_id: str = setting("AIART_STREAM_CLIENT_ID", "",
                             "The bridge's MQTT client id, which names its session at the "
                             "broker; empty: aiart-stream-<model>-<stream>.")
    metrics_port: int = setting("AIART_STREAM_METRICS_PORT", 9102,
                                "The port of a bridge's Prometheus metrics.")
    session_seconds: int = setting(
        "AIART_STREAM_SESSION_SECONDS", 7 * 86400,
        "How long the broker keeps a bridge's session, and the messages that come for it, "
        "while the bridge is away.")


class CLISettings(EnvSettings):
    """The CLI: ``~/.config/aiart/cli.env`` may hold these too."""

    program: ClassVar[str] = "CLI"

    url: str = setting("AIART_URL", "https://localhost:8443", "aiart's address (--url).")
    api_key: str = setting("AIART_API_KEY", "", "An API key (--key).", secret=True)
    token: str = setting("AIART_TOKEN", "", "An OIDC token, when no API key is given.",
                         secret=True)
    ca_file: str = setting("AIART_CA_FILE", "",
                           "The CA that signed the gateway's certificate; empty: the system's "
                           "and the local CA hack/stack.sh made.")
    store_env: str = setting("AIART_STORE_ENV", "",
                             "The file with the store's endpoint and keys; empty: "
                             "~/.config/aiart/store.env.")
    registry_env: str = setting("AIART_REGISTRY_ENV", "",
                                "The file with the registry's password (model packages); "
                                "empty: ~/.config/aiart/registry.env.")
    tls_dir: str = setting("AIART_TLS_DIR", "",
                           "The folder of aiart's CAs (internal-ca.crt: the registry's); "
                           "empty: ~/.config/aiart/tls.")
    config_home: str = setting("XDG_CONFIG_HOME", "", "The folder whose aiart folder holds "
                               "the CLI's files; empty: ~/.config.")

    @property
    def config_dir(self) -> Path:
        return Path(self.config_home or Path.home() / ".config") / "aiart"


def environment_with(file: Path, prefix: str = "") -> dict[str, str]:
    """The environment, and for what it does not set, the ``NAME=value``
    lines of ``file`` (those whose name starts with ``prefix``), as
    hack/stack.sh leaves them for the CLI."""
    env = dict(os.environ)
    if file.is_file():
        for line in file.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip().startswith(prefix):
                env.setdefault(name.strip(), value.strip())
    return env


GROUPS: tuple[type[EnvSettings], ...] = (
    OperatorSettings, StoreSettings, StoreGatewaySettings, CatalogSettings, ServiceSettings,
    OIDCSettings, ProbeSettings, EngineProxySettings, StreamSettings, LogSettings, CLISettings)


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        default = str(default).lower()
    elif isinstance(default, tuple):
        default = ",".join(default)
    return f"`{default}`" if default not in ("", None) else ""


def env_table() -> str:
    """The Markdown table of every variable, for docs/operations.md. A
    variable the operator reads to hand on to model servers, which read it
    too, is one row."""
    rows: dict[str, list[str]] = {}
    for group in GROUPS:
        for field in group.model_fields.values():
            variable, secret = _declared(field)
            if not variable:
                continue
            twin = f" (or `{variable}_FILE`)" if secret else ""
            rows[variable] = [f"`{variable}`{twin}", group.program, _shown(field.default),
                              str(field.description)]
    for model_field in dataclasses.fields(ServerSettings):
        variable, doc = model_field.metadata["env"], model_field.metadata["doc"]
        if variable in rows:
            rows[variable][1] += ", model servers"
        else:
            rows[variable] = [f"`{variable}`", "model servers", _shown(model_field.default), doc]
    lines = ["| variable | read by | default | what it does |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows.values()])


BEGIN, END = "<!-- settings: begin -->", "<!-- settings: end -->"


def with_table(page: str) -> str:
    """``page`` with the text between the markers made the table anew."""
    head, found, rest = page.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise SettingsError(f"the page has no {BEGIN} ... {END} markers")
    return f"{head}{BEGIN}\n{env_table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys

    # python -m aiart.core.settings docs/operations.md: the table, written in place.
    for name in sys.argv[1:] or ["/dev/stdout"]:
        if name == "/dev/stdout":
            print(env_table())
            continue
        page = Path(name)
        page.write_text(with_table(page.read_text(encoding="utf-8")), encoding="utf-8")
