#!/usr/bin/env bash
# Measures the two ways to run H2O's MOJO scorer behind aiart's server.
# h2o-genmodel.jar comes from the h2o 3.46.0.9 wheel (inside its h2o.jar),
# cached by version; nothing of it is committed.
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"
ensure_venv
jar=$("$AIART_ROOT/hack/images.sh" fetch_genmodel_jar)
"$AIART_ROOT/.venv/bin/pip" show -q jpype1 >/dev/null 2>&1 || "$AIART_ROOT/.venv/bin/pip" install -q jpype1 >/dev/null 2>&1
exec taskset -c 1 "$AIART_ROOT/.venv/bin/python" "$AIART_ROOT/bench/h2o_bridge.py" --genmodel "$jar" "$@"
