"""The test identity provider's fixtures (tests/oidc.py), for the modules
here that verify tokens."""

from tests.oidc import jwks_url, signer  # noqa: F401  (fixtures, found by name)
