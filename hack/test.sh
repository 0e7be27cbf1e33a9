#!/usr/bin/env bash
# The one test command: sets up whatever is missing (engine, swarm, images,
# stack; as hack/up.sh does), checks lint and types, then runs every test:
# unit (pure), adapters against the real engine, end to end through Traefik,
# and the reliability scenarios on a multi-node harness (tests/chaos, short
# versions; ./hack/chaos.sh runs the long soak).
# Extra arguments go to pytest, e.g. ./hack/test.sh tests/unit -k spec
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$AIART_ROOT/hack/stack.sh"

started=$SECONDS
apt_install curl ca-certificates
ensure_engine
ensure_swarm
ensure_venv
cd "$AIART_ROOT"

log "lint and types"
.venv/bin/ruff check .
.venv/bin/mypy --no-error-summary

log "images and stack"
images=$("$AIART_ROOT/hack/images.sh" build_all)
set -a; eval "$images"; set +a
deploy_stack
log "set-up took $((SECONDS - started)) s"

export AIART_GATEWAY_URL="http://localhost:$AIART_GATEWAY_PORT"
export AIART_STACK
# What the reliability scenarios (tests/chaos) measured, printed at the end.
AIART_CHAOS_REPORT=$(mktemp)
export AIART_CHAOS_REPORT
status=0
.venv/bin/pytest -p no:cacheprovider -ra --durations=15 "$@" || status=$?
if [ -s "$AIART_CHAOS_REPORT" ]; then
  log "what the reliability scenarios measured"
  .venv/bin/python -m tests.chaos.report "$AIART_CHAOS_REPORT"
fi
rm -f "$AIART_CHAOS_REPORT"
# pytest's 5 means it ran no test: a failure here, never a green run.
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  status=1
fi
log "tests took $((SECONDS - started)) s in all"
exit "$status"
