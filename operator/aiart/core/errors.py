"""The operator's error types: transient ones are retried, permanent ones reported."""

from __future__ import annotations


class TransientError(Exception):
    """A dependency (daemon, registry, gateway, network) failed; retry later."""


class PermanentError(Exception):
    """The user's input cannot work as given; status Failed until it changes."""


class StoreUnavailable(TransientError):
    """The object store did not answer, or refused aiart; retried with backoff."""


class ObjectMissing(PermanentError):
    """The bucket or key does not exist in the object store."""
