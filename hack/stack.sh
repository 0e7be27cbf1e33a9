#!/usr/bin/env bash
# Deploys aiart's stack (stack.yml) on the local swarm and waits for it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AIART_STACK=${AIART_STACK:-aiart}
AIART_GATEWAY_PORT=${AIART_GATEWAY_PORT:-8080}
AIART_REGISTRY_PORT=${AIART_REGISTRY_PORT:-5000}
# The address users reach the gateway by; status endpoints are built from it.
AIART_PUBLIC_URL=${AIART_PUBLIC_URL:-http://localhost:$AIART_GATEWAY_PORT}
export AIART_GATEWAY_PORT AIART_REGISTRY_PORT AIART_PUBLIC_URL

ensure_models_network() {
  docker network inspect aiart-models >/dev/null 2>&1 \
    || docker network create --driver overlay --attachable --label aiart.managed-by=aiart aiart-models >/dev/null
}

wait_http() {
  # wait_http URL SECONDS: until URL answers (any HTTP status).
  local url=$1 deadline=$((SECONDS + $2))
  until curl -s -o /dev/null "$url"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

deploy_stack() {
  # Needs the AIART_*_IMAGE variables (hack/images.sh build_all).
  ensure_models_network
  export AIART_CA_BUNDLE=${AIART_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  AIART_CA_HASH=$(sha256sum "$AIART_CA_BUNDLE" | cut -c1-12)
  export AIART_CA_HASH
  log "deploying the stack '$AIART_STACK'"
  docker stack deploy --resolve-image never -c "$AIART_ROOT/stack.yml" "$AIART_STACK" >/dev/null
  wait_http "http://localhost:$AIART_REGISTRY_PORT/v2/" 120 || die "the registry did not come up"
  wait_http "http://localhost:$AIART_GATEWAY_PORT/" 120 || die "the gateway (Traefik) did not come up"
  local deadline=$((SECONDS + 120))
  until [ "$(docker service ls --filter "name=${AIART_STACK}_operator" --format '{{.Replicas}}')" = "1/1" ]; do
    [ $SECONDS -lt $deadline ] || die "the operator did not start; see: docker service logs ${AIART_STACK}_operator"
    sleep 0.5
  done
}

config_status() {
  docker config inspect "$1" --format '{{index .Spec.Labels "aiart.status"}}' 2>/dev/null
}

wait_ready() {
  # wait_ready CONFIG SECONDS: until the model config's status is Ready.
  local config=$1 deadline=$((SECONDS + $2)) status
  while :; do
    status=$(config_status "$config")
    case "$status" in
      Ready) return 0 ;;
      Failed|Invalid)
        die "$config is $status: $(docker config inspect "$config" --format '{{index .Spec.Labels "aiart.status.message"}}')" ;;
    esac
    [ $SECONDS -lt $deadline ] || die "$config is still '${status:-unseen}' after $2 s"
    sleep 0.5
  done
}

# Run a function by name when executed, not when sourced.
if [[ "${BASH_SOURCE[0]}" == "$0" && $# -gt 0 ]]; then "$@"; fi
