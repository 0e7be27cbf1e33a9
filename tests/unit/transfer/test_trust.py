"""The keys a swarm trusts model packages from, as ``aiart import`` reads
them: only what ``aiart trust add`` writes counts."""

from __future__ import annotations

from aiart.core import labels as L
from aiart.core import packages as P
from aiart.transfer.packages import trusted_keys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes import FakeCluster


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


async def test_only_a_key_kept_as_aiart_trust_keeps_it_is_trusted() -> None:
    cluster = FakeCluster()
    site, evil, other = (Ed25519PrivateKey.generate() for _ in range(3))
    site_id, evil_id = P.key_id(site.public_key()), P.key_id(evil.public_key())
    cluster.add_config(f"{L.PACKAGE_KEY_CONFIG_PREFIX}{site_id}", pem(site), {
        L.PACKAGE_KEY: site_id, L.PACKAGE_KEY_NAME: "site-a", L.MANAGED_BY: "aiart"})
    # A model version's config that carries the labels too (what a break-in
    # into the API would write if its engine proxy let it).
    cluster.add_config(f"{L.PACKAGE_KEY_CONFIG_PREFIX}{evil_id}", pem(evil), {
        L.MODEL: "x", L.PACKAGE_KEY: evil_id, L.PACKAGE_KEY_NAME: "evil"})
    # Labelled with one key's id, holding another; and not a key at all.
    cluster.add_config("aiart-package-key-borrowed", pem(other), {L.PACKAGE_KEY: site_id})
    cluster.add_config("aiart-package-key-junk", b"not a key", {L.PACKAGE_KEY: "junk"})
    found = await trusted_keys(cluster)  # type: ignore[arg-type]
    assert [P.key_id(key) for _, key in found] == [site_id]
