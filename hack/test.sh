#!/usr/bin/env bash
# The one test command: sets up whatever is missing (engine, swarm, images,
# stack; as hack/up.sh does), checks lint and types, then runs every test:
# unit (pure), adapters against the real engine, end to end through Traefik,
# and the reliability scenarios on a multi-node harness (tests/chaos, short
# versions; ./hack/chaos.sh runs the long soak).
# Extra arguments go to pytest, e.g. ./hack/test.sh tests/unit -k spec
# ./hack/test.sh unit [PYTEST ARGS]: the fast loop, no engine and no stack:
# lint, types and every test that needs no Docker (unit, runtime, and the
# integration tests against in-process servers).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$AIART_ROOT/hack/stack.sh"
# One thread each for the numeric libraries the tests load in their own
# processes (scikit-learn's OpenMP, OpenBLAS): the tests run two at a time
# beside the stack on every core, and a pool sized to the machine's cores
# spins against them. scikit-learn's 117 predictors fitted and loaded took
# 3.3 s alone, 8.6 s beside two busy loops, 3.7 s so with one thread, and
# 55 s in a CI run. What runs in containers is not touched.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

if [ "${1:-}" = unit ]; then
  shift
  ensure_venv
  cd "$AIART_ROOT"
  .venv/bin/ruff check .
  .venv/bin/mypy --no-error-summary
  # The h2o runtime's tests score with H2O's jar (fetched once, cached).
  AIART_GENMODEL_JAR=${AIART_GENMODEL_JAR:-$("$AIART_ROOT/hack/images.sh" fetch_genmodel_jar)}
  # The gateway's key plugin is tested in the Traefik binary itself.
  AIART_TRAEFIK_BIN=${AIART_TRAEFIK_BIN:-$("$AIART_ROOT/hack/images.sh" fetch_traefik_bin)}
  # The stream bridge is tested against Mosquitto, from Debian's packages.
  AIART_BROKER_ROOT=${AIART_BROKER_ROOT:-$("$AIART_ROOT/hack/images.sh" broker_files)}
  export AIART_GENMODEL_JAR AIART_TRAEFIK_BIN AIART_BROKER_ROOT
  rc=0
  .venv/bin/pytest -p no:cacheprovider -q -m "not docker and not e2e" \
    tests/unit tests/runtime tests/integration "$@" || rc=$?
  # pytest's 5 means it ran no test: a failure, never a green run.
  [ "$rc" -ne 5 ] || { echo "pytest collected no tests" >&2; rc=1; }
  exit "$rc"
fi

# ./hack/test.sh e2e [PYTEST ARGS]: the security and end-to-end tests (e.g.
# -k NAME, or test files first) against the stack, set up or updated only
# where its content changed; no lint, no other tier.
e2e_only=""
if [ "${1:-}" = e2e ]; then
  shift
  e2e_only=1
fi

started=$SECONDS
# Where the time went, printed as a table at the end: "stage|seconds" lines.
stages=()
stage_started=$SECONDS
stage() {
  # stage NAME: the time since the last stage ended is NAME's.
  stages+=("$1|$((SECONDS - stage_started))")
  stage_started=$SECONDS
}
# wrk and h2load: the benchmarks' load generators (HTTP, gRPC), which
# tests/e2e/test_bench_smoke.py runs; Chromium and its WebDriver, which
# tests/e2e/test_dashboard.py drives.
apt_install curl ca-certificates wrk nghttp2-client util-linux chromium chromium-driver
ensure_engine
ensure_swarm
ensure_venv
cd "$AIART_ROOT"
stage "engine, swarm, virtual environment"

if [ -z "$e2e_only" ]; then
  log "lint and types"
  .venv/bin/ruff check .
  .venv/bin/mypy --no-error-summary
  stage "lint and types"
fi

log "images and stack"
images=$("$AIART_ROOT/hack/images.sh" build_all)
set -a; eval "$images"; set +a
# An ACME server for the gateway's ACME test (tests/security/test_acme.py).
AIART_PEBBLE_IMAGE=$("$AIART_ROOT/hack/images.sh" build_pebble "$AIART_BASE_IMAGE")
export AIART_PEBBLE_IMAGE
stage "images"
deploy_stack
stage "stack deployed"
log "set-up took $((SECONDS - started)) s"

# The gateway as users reach it: HTTPS, checked against the local CA.
export AIART_GATEWAY_URL="$AIART_PUBLIC_URL"
export AIART_STACK

# No arguments: every test, the multi-node scenarios (tests/chaos) last and
# on their own, their harness brought up in the background meanwhile: it
# takes minutes (mostly loading images into its nodes) that the other tests
# need not wait for. Removed at the end; AIART_CHAOS_KEEP=1 keeps it. A
# harness that is already up is used as it is and left up
# (tests/chaos/conftest.py).
harness_pid=""
if [ $# -eq 0 ] && [ -z "$e2e_only" ]; then
  if ! docker container inspect "${AIART_CLUSTER:-aiart}-m1" >/dev/null 2>&1; then
    AIART_CHAOS_HARNESS=$(mktemp -d)
    export AIART_CHAOS_HARNESS
    log "bringing the multi-node harness up in the background (log: $AIART_CHAOS_HARNESS/up.log)"
    (
      up_started=$SECONDS up_status=0
      { "$AIART_ROOT/hack/cluster.sh" up && "$AIART_ROOT/hack/cluster.sh" stack; } \
        >"$AIART_CHAOS_HARNESS/up.log" 2>&1 || up_status=$?
      # What the scenarios' fixture waits for: exit status and seconds.
      echo "$up_status $((SECONDS - up_started))" >"$AIART_CHAOS_HARNESS/done"
    ) &
    harness_pid=$!
  fi
fi
# What the reliability scenarios (tests/chaos) measured, printed at the end.
AIART_CHAOS_REPORT=$(mktemp)
export AIART_CHAOS_REPORT
run_pytest() {
  # pytest's 5 means it ran no test: a failure here, never a green run.
  local rc=0 run_started=$SECONDS
  .venv/bin/pytest -p no:cacheprovider -ra --durations=30 "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests ($*)" >&2
    rc=1
  fi
  log "pytest $* took $((SECONDS - run_started)) s"
  return "$rc"
}
status=0
if [ -n "$e2e_only" ]; then
  # Test files or folders given: those; otherwise every security and e2e test.
  targets=(tests/security tests/e2e)
  [ ! -e "${1%%::*}" ] || targets=()
  run_pytest "${targets[@]}" "$@" || status=$?
  stage "pytest ${targets[*]} $*"
elif [ $# -gt 0 ]; then
  run_pytest "$@" || status=$?
  stage "pytest $*"
else
  # Separate runs: each one's session fixtures remove its models before the
  # next starts (dozens of model containers left running beside the
  # multi-node harness starved it of CPU: Swarm kept moving aiart's services
  # between its managers, and churn stalled).
  # Two at a time: they are CPU-bound, and the machine has two cores.
  run_pytest -n 2 tests/unit tests/runtime tests/integration || status=$?
  stage "unit, runtime, integration, 2 at a time"
  # The security and end-to-end tests mostly wait (for builds, tasks,
  # routes): AIART_TEST_WORKERS files at a time (pytest-xdist, a file's
  # tests on one worker), each test with models of its own on the one
  # stack. Those that restart one of aiart's services (marked serial) run
  # after them, alone.
  run_pytest -n "${AIART_TEST_WORKERS:-2}" --dist loadfile -m "not serial and not alone" \
    tests/security tests/e2e || status=$?
  stage "security and e2e, ${AIART_TEST_WORKERS:-2} files at a time"
  # The benchmarks' smoke runs and the browser test load both cores:
  # nothing runs beside them.
  run_pytest -m alone tests/security tests/e2e || status=$?
  stage "benchmarks' smoke runs and the browser test, alone"
  # The multi-node scenarios run on a swarm of their own (the harness), so
  # the tests that restart one of aiart's services on this node's stack run
  # beside them: alone on this stack, as they must be. Their output is shown
  # after the scenarios', not interleaved with it.
  serial_log=$(mktemp)
  run_pytest -m "serial and not alone" tests/security tests/e2e >"$serial_log" 2>&1 &
  serial_pid=$!
  run_pytest tests/chaos || status=$?
  serial_status=0
  wait "$serial_pid" || serial_status=$?
  log "the tests that restart aiart's services, beside the scenarios:"
  cat "$serial_log"
  rm -f "$serial_log"
  [ "$serial_status" -eq 0 ] || status=$serial_status
  stage "chaos, and beside it the e2e that restart aiart's services"
fi
if [ -s "$AIART_CHAOS_REPORT" ]; then
  log "what the reliability scenarios measured"
  .venv/bin/python -m tests.chaos.report "$AIART_CHAOS_REPORT"
fi
rm -f "$AIART_CHAOS_REPORT"
if [ -n "$harness_pid" ]; then
  wait "$harness_pid" || true
  if [ -z "${AIART_CHAOS_KEEP:-}" ]; then
    "$AIART_ROOT/hack/cluster.sh" down
  fi
  [ ! -s "$AIART_CHAOS_HARNESS/done" ] \
    || stages+=("(multi-node harness up, beside the tests)|$(cut -d' ' -f2 "$AIART_CHAOS_HARNESS/done")")
  rm -rf "$AIART_CHAOS_HARNESS"
  stage "harness removed"
fi
log "tests took $((SECONDS - started)) s in all"
printf '\n| stage | seconds |\n|---|---|\n'
printf '| %s |\n' "${stages[@]//|/ | }"
printf '| all | %s |\n\n' "$((SECONDS - started))"
exit "$status"
