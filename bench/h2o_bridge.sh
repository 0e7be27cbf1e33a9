#!/usr/bin/env bash
# Measures the two ways to run H2O's MOJO scorer behind aiart's server.
# h2o-genmodel.jar comes from the h2o 3.46.0.9 wheel (inside its h2o.jar),
# cached by version; nothing of it is committed.
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"
ensure_venv
jar="$AIART_CACHE/h2o-3.46.0.9/h2o-genmodel.jar"
if [ ! -f "$jar" ]; then
  log "fetching h2o 3.46.0.9 from PyPI for its h2o-genmodel.jar (279 MB, once)"
  tmp=$(mktemp -d)
  "$AIART_ROOT/.venv/bin/pip" download -q --no-deps -d "$tmp" "h2o==3.46.0.9" >/dev/null 2>&1 \
    || die "cannot download h2o 3.46.0.9"
  mkdir -p "$(dirname "$jar")"
  "$AIART_ROOT/.venv/bin/python" - "$tmp" "$jar" <<'PY'
import io, sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("h2o-*.whl"))
with zipfile.ZipFile(wheel) as w:
    inner = next(n for n in w.namelist() if n.endswith("backend/bin/h2o.jar"))
    with zipfile.ZipFile(io.BytesIO(w.read(inner))) as h2o:
        pathlib.Path(sys.argv[2]).write_bytes(h2o.read("www/3/h2o-genmodel.jar"))
PY
  rm -rf "$tmp"
fi
"$AIART_ROOT/.venv/bin/pip" show -q jpype1 >/dev/null 2>&1 || "$AIART_ROOT/.venv/bin/pip" install -q jpype1 >/dev/null 2>&1
exec taskset -c 1 "$AIART_ROOT/.venv/bin/python" "$AIART_ROOT/bench/h2o_bridge.py" --genmodel "$jar" "$@"
