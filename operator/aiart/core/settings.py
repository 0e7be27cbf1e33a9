"""Operator settings, read once from ``AIART_*`` environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _host(value: str) -> str:
    """AIART_GATEWAY_HOST: a DNS name (it goes into Traefik rules as is)."""
    value = value.strip().lower()
    if value and not _HOST.match(value):
        raise ValueError(f"AIART_GATEWAY_HOST must be a DNS name, not {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    registry: str = "localhost:5000"
    network: str = "aiart-models"
    entrypoint: str = "web"
    # The one host name model routes answer to (the site's domain for the
    # gateway); empty: any.
    gateway_host: str = ""
    public_url: str = "http://localhost:8080"
    # Where the operator itself reaches the gateway to check readiness: inside
    # the stack that is Traefik's name on the overlay network, not the host's.
    gateway_url: str = "http://localhost:8080"
    # The forwardAuth service that guards model routes, as Traefik reaches it.
    auth_url: str = "http://auth:8000"
    # For an https auth_url: the CA file, as Traefik's container has it, that
    # the auth service's certificate chains to (empty: the system's CAs).
    auth_ca: str = ""
    resync_seconds: float = 30.0
    workers: int = 4
    default_sklearn: str = "1.9.1"
    base_image: str = ""
    # The h2o runtime is prebuilt where H2O's jar is at hand (hack/images.sh);
    # the operator only names it.
    h2o_runtime_image: str = ""
    python_version: str = "3.11"
    cache_dir: str = "/var/cache/aiart"
    build_timeout_seconds: float = 1800.0
    # A model whose tasks failed this many times with none running is Failed.
    failed_task_threshold: int = 3
    # The object store as model containers reach it: the store gateway,
    # which takes each model's own keys (store_policy), and the file holding
    # the gateway's key, which those keys derive from. Without both, no model
    # gets the store.
    model_store_endpoint: str = ""
    store_secure: bool = False
    store_gateway_key_file: str = ""
    # Where the operator serves its Prometheus metrics (0: nowhere).
    metrics_port: int = 9100
    # Alertmanager, whose active alerts become aiart.status.alerts labels
    # (empty: no alert labels), and how often it is read.
    alertmanager_url: str = ""
    alert_poll_seconds: float = 5.0
    # The file holding the monitoring password Alertmanager asks for (user
    # aiart; empty: no credentials sent).
    alertmanager_password_file: str = ""
    # The file holding the registry's password (user aiart) for pushes and
    # the pulls of model services (empty: the registry asks for none).
    registry_password_file: str = ""
    # Where model servers send their traces (OTLP over HTTP; empty: no tracing).
    model_otlp_endpoint: str = ""
    # Swarm placement constraints for every model task, e.g. node.role==worker
    # to keep models off the managers (AIART_MODEL_CONSTRAINTS, comma-separated).
    model_constraints: tuple[str, ...] = ()
    # The gateway's DNS names on the model network: aiart's model servers
    # answer inference from those addresses only (runtimes/aiart_runtime/
    # gateway_only.py). Empty: from anywhere on the network.
    gateway_hosts: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        public = env.get("AIART_PUBLIC_URL", cls.public_url).rstrip("/")
        return cls(
            registry=env.get("AIART_REGISTRY", cls.registry),
            network=env.get("AIART_NETWORK", cls.network),
            entrypoint=env.get("AIART_ENTRYPOINT", cls.entrypoint),
            gateway_host=_host(env.get("AIART_GATEWAY_HOST", "")),
            public_url=public,
            gateway_url=env.get("AIART_GATEWAY_URL", public).rstrip("/"),
            auth_url=env.get("AIART_AUTH_URL", cls.auth_url).rstrip("/"),
            auth_ca=env.get("AIART_AUTH_CA", "").strip(),
            resync_seconds=float(env.get("AIART_RESYNC_SECONDS", cls.resync_seconds)),
            workers=int(env.get("AIART_WORKERS", cls.workers)),
            default_sklearn=env.get("AIART_DEFAULT_SKLEARN", cls.default_sklearn),
            base_image=env.get("AIART_BASE_IMAGE", cls.base_image),
            h2o_runtime_image=env.get("AIART_H2O_RUNTIME_IMAGE", cls.h2o_runtime_image),
            python_version=env.get("AIART_PYTHON_VERSION", cls.python_version),
            cache_dir=env.get("AIART_CACHE_DIR", cls.cache_dir),
            build_timeout_seconds=float(
                env.get("AIART_BUILD_TIMEOUT_SECONDS", cls.build_timeout_seconds)
            ),
            model_store_endpoint=env.get("AIART_S3_MODEL_ENDPOINT", "").strip(),
            store_secure=env.get("AIART_S3_SECURE", "").lower() in ("1", "true", "yes"),
            store_gateway_key_file=env.get("AIART_STORE_GATEWAY_KEY_FILE", "").strip(),
            metrics_port=int(env.get("AIART_METRICS_PORT", cls.metrics_port)),
            alertmanager_url=env.get("AIART_ALERTMANAGER_URL", "").strip().rstrip("/"),
            alert_poll_seconds=float(env.get("AIART_ALERT_POLL_SECONDS", cls.alert_poll_seconds)),
            alertmanager_password_file=env.get("AIART_ALERTMANAGER_PASSWORD_FILE", "").strip(),
            registry_password_file=env.get("AIART_REGISTRY_PASSWORD_FILE", "").strip(),
            model_otlp_endpoint=env.get("AIART_MODEL_OTLP_ENDPOINT", "").strip(),
            model_constraints=tuple(
                c.strip() for c in env.get("AIART_MODEL_CONSTRAINTS", "").split(",") if c.strip()),
            gateway_hosts=tuple(
                h.strip() for h in env.get("AIART_GATEWAY_HOSTS", "").split(",") if h.strip()),
        )
