"""The gateway's certificate from an ACME CA (docs/security.md).

Deployed with ``AIART_ACME_DOMAIN``, the gateway gets a certificate for that
name from the CA through the TLS-ALPN challenge and serves it, while other
names keep the default certificate; deployed again without it, the default
certificate is back. The CA is Pebble, the ACME test server (Debian's
``pebble``), run on aiart's internal network with its challenges taken as
passed (``PEBBLE_VA_ALWAYS_VALID``): no CA on the internet can reach this
machine. Its HTTPS listener has a certificate of aiart's internal CA, which
the gateway trusts through ``AIART_CA_BUNDLE``, as a site's private ACME CA
would be trusted. Redeploys the stack's gateway (and the operator, whose CA
bundle changes too): run alone."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import GATEWAY, INTERNAL_CA, STACK, TLS_DIR, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "acme.aiart.test"
PEBBLE = "aiart-test-pebble"
LABELS = {"aiart.test": "acme"}


def served_certificate(server_name: str) -> x509.Certificate:
    """The certificate the gateway presents for ``server_name`` (SNI)."""
    address = urlsplit(GATEWAY)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((address.hostname, address.port or 443), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def issuer(server_name: str) -> str:
    try:
        return served_certificate(server_name).issuer.rfc4514_string()
    except OSError as exc:  # the gateway restarting
        return f"no answer: {exc}"


def internal_certificate(name: str) -> tuple[bytes, bytes]:
    """A certificate and key for ``name``, signed by aiart's internal CA."""
    ca_cert = x509.load_pem_x509_certificate(Path(INTERNAL_CA).read_bytes())
    ca_key = serialization.load_pem_private_key(
        Path(TLS_DIR, "internal-ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def deploy(**env: str) -> None:
    """hack/stack.sh's deploy, as a site runs it, with ``env`` added."""
    done = subprocess.run(
        ["bash", "-c", 'source hack/lib.sh && source hack/stack.sh && deploy_stack'],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def forget_certificates(engine: docker.DockerClient) -> None:
    """Empty the gateway's ACME storage: each Pebble is a new CA."""
    image = os.environ["AIART_OPERATOR_IMAGE"]
    engine.containers.run(image, ["rm", "-f", "/acme/acme.json"], entrypoint=[], remove=True,
                          volumes={f"{STACK}_gateway-acme": {"bind": "/acme", "mode": "rw"}},
                          labels=LABELS, network_mode="none")


@pytest.fixture
def pebble(engine: docker.DockerClient) -> Iterator[str]:
    """Pebble as a service on aiart's internal network; its directory URL."""
    image = os.environ.get("AIART_PEBBLE_IMAGE", "")
    assert image, "AIART_PEBBLE_IMAGE is set by ./hack/test.sh"
    cert, key = internal_certificate(PEBBLE)
    config = {"pebble": {"listenAddress": "0.0.0.0:14000",
                         "managementListenAddress": "0.0.0.0:15000",
                         "certificate": "/run/secrets/pebble.crt",
                         "privateKey": "/run/secrets/pebble.key",
                         "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
                         "externalAccountBindingRequired": False}}
    remove_pebble(engine)  # what a run killed mid-way left
    try:
        made = [engine.configs.create(name=f"{PEBBLE}-config", labels=LABELS,
                                      data=json.dumps(config).encode()),
                engine.secrets.create(name=f"{PEBBLE}-crt", data=cert, labels=LABELS),
                engine.secrets.create(name=f"{PEBBLE}-key", data=key, labels=LABELS)]
        service = engine.services.create(
            image, name=PEBBLE, args=["-config", "/etc/pebble.json"], labels=LABELS,
            env=["PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1"],
            # Reached by DNS, task to task, as aiart's services reach each
            # other (no virtual IP: the swarm's IPVS does not work on every
            # host).
            networks=["aiart-internal"], endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
            configs=[docker.types.ConfigReference(made[0].id, made[0].name, "/etc/pebble.json")],
            secrets=[docker.types.SecretReference(made[1].id, made[1].name, "pebble.crt"),
                     docker.types.SecretReference(made[2].id, made[2].name, "pebble.key")])
        wait_for(lambda: any(t["Status"]["State"] == "running" for t in service.tasks()),
                 120, "Pebble's task")
        yield f"https://{PEBBLE}:14000/dir"
    finally:
        remove_pebble(engine)


def remove_pebble(engine: docker.DockerClient) -> None:
    """Pebble's service, then its config and secrets: all that carries this
    file's label, whether its set-up finished or not."""
    only = {"label": [f"{k}={v}" for k, v in LABELS.items()]}
    for service in engine.services.list(filters=only):
        service.remove()
    # sparse: a list with each container inspected fails on one that goes
    # between the list and its inspection (seen in CI: 404 in teardown).
    wait_for(lambda: not engine.containers.list(
        all=True, sparse=True, filters={"label": f"com.docker.swarm.service.name={PEBBLE}"}),
        60, "Pebble to stop")
    for item in [*engine.configs.list(filters=only), *engine.secrets.list(filters=only)]:
        item.remove()


def test_the_gateway_serves_a_certificate_its_acme_ca_issued(
        engine: docker.DockerClient, pebble: str) -> None:
    default_issuer = issuer("localhost")
    assert "Pebble" not in default_issuer, default_issuer
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as bundle:
        # The system's CAs and the one Pebble's listener chains to.
        bundle.write(Path("/etc/ssl/certs/ca-certificates.crt").read_text()
                     + Path(INTERNAL_CA).read_text())
        bundle.flush()
        forget_certificates(engine)
        try:
            deploy(AIART_ACME_DOMAIN=DOMAIN, AIART_ACME_CA_SERVER=pebble,
                   AIART_ACME_EMAIL="ops@aiart.test", AIART_CA_BUNDLE=bundle.name)
            got = wait_for(lambda: issuer(DOMAIN) if "Pebble" in issuer(DOMAIN) else None,
                           180, f"a certificate for {DOMAIN} from Pebble")
            served = served_certificate(DOMAIN)
            names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert names.value.get_values_for_type(x509.DNSName) == [DOMAIN], got
            assert "Pebble" in got
            # Other names keep the default certificate.
            assert issuer("localhost") == default_issuer
        finally:
            deploy()
    wait_for(lambda: issuer(DOMAIN) == default_issuer, 120,
             "the default certificate once ACME is off")
    forget_certificates(engine)
