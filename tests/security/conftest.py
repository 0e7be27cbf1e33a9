"""The security suite runs against the stack that ./hack/test.sh deploys,
with the end-to-end suite's fixtures (tests/e2e/conftest.py)."""

from tests.e2e.conftest import (  # noqa: F401  (fixtures, found by name)
    engine,
    gateway,
    iris_pickle,
    models,
    module_models,
    operator_service,
    run_id,
)
from tests.oidc import jwks_url, signer  # noqa: F401  (fixtures, found by name)
