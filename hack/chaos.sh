#!/usr/bin/env bash
# The long reliability soak: every scenario of tests/chaos on the multi-node
# harness (hack/cluster.sh) with many more iterations than CI runs, and the
# fuzzing with more examples; then a table of what each scenario measured.
# Sizes are settings; e.g. a shorter soak:
#   AIART_CHAOS_KILLS=10 AIART_CHAOS_CHURN=50 ./hack/chaos.sh
# Extra arguments go to pytest (e.g. -k churn). The harness is brought up if
# it is not, and removed afterwards only if this run brought it up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install curl ca-certificates
ensure_engine
ensure_venv
cd "$AIART_ROOT"

export AIART_CHAOS_KILLS=${AIART_CHAOS_KILLS:-30}
export AIART_CHAOS_LOSSES=${AIART_CHAOS_LOSSES:-kill pause partition}
export AIART_CHAOS_LOSS_ROUNDS=${AIART_CHAOS_LOSS_ROUNDS:-3}
export AIART_CHAOS_RESTARTS=${AIART_CHAOS_RESTARTS:-3}
export AIART_CHAOS_OUTAGES=${AIART_CHAOS_OUTAGES:-3}
export AIART_CHAOS_OUTAGE_SECONDS=${AIART_CHAOS_OUTAGE_SECONDS:-60}
export AIART_CHAOS_CHURN=${AIART_CHAOS_CHURN:-100}
export AIART_CHAOS_CHURN_BURST=${AIART_CHAOS_CHURN_BURST:-25}
export AIART_FUZZ_EXAMPLES=${AIART_FUZZ_EXAMPLES:-500}
report=$(mktemp)
export AIART_CHAOS_REPORT=$report

log "soak: $AIART_CHAOS_KILLS operator kills; worker losses ($AIART_CHAOS_LOSSES) x $AIART_CHAOS_LOSS_ROUNDS; $AIART_CHAOS_RESTARTS engine restarts; $AIART_CHAOS_OUTAGES registry outages of $AIART_CHAOS_OUTAGE_SECONDS s; churn of $AIART_CHAOS_CHURN models; $AIART_FUZZ_EXAMPLES examples per fuzz property"
status=0
.venv/bin/pytest -p no:cacheprovider -ra --durations=0 tests/chaos tests/unit/control/test_fuzz.py "$@" \
  || status=$?
[ "$status" -ne 5 ] || { echo "pytest collected no tests" >&2; status=1; }
echo
.venv/bin/python -m tests.chaos.report "$report"
rm -f "$report"
exit "$status"
