#!/usr/bin/env bash
# Deploys aiart's stack (stack.yml) on the local swarm and waits for it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AIART_STACK=${AIART_STACK:-aiart}
AIART_GATEWAY_PORT=${AIART_GATEWAY_PORT:-8080}
AIART_REGISTRY_PORT=${AIART_REGISTRY_PORT:-5000}
# The address users reach the gateway by; status endpoints are built from it.
AIART_PUBLIC_URL=${AIART_PUBLIC_URL:-http://localhost:$AIART_GATEWAY_PORT}
AIART_STORE_PORT=${AIART_STORE_PORT:-9000}
export AIART_GATEWAY_PORT AIART_REGISTRY_PORT AIART_PUBLIC_URL AIART_STORE_PORT
# Where every node pulls model images from: the registry's address as all
# nodes reach it (their daemons must trust it when it is plain HTTP). On a
# single node, localhost. The registry runs on the node labelled
# aiart.registry=true (deploy_stack labels this one if none is).
AIART_REGISTRY_ADDRESS=${AIART_REGISTRY_ADDRESS:-localhost:$AIART_REGISTRY_PORT}
# The hosts this script reaches the stack's published ports on.
AIART_STACK_HOST=${AIART_STACK_HOST:-localhost}
export AIART_REGISTRY_ADDRESS AIART_STACK_HOST
# Tracing: on when an OTLP/HTTP endpoint (a collector's base URL) is given.
AIART_OTLP_ENDPOINT=${AIART_OTLP_ENDPOINT:-}
AIART_OTLP_ENDPOINT=${AIART_OTLP_ENDPOINT%/}
AIART_TRACING=$([ -n "$AIART_OTLP_ENDPOINT" ] && echo true || echo false)
export AIART_OTLP_ENDPOINT AIART_TRACING
# Where the aiart CLI finds the object store's endpoint and keys on this host.
AIART_STORE_ENV=${AIART_STORE_ENV:-${XDG_CONFIG_HOME:-$HOME/.config}/aiart/store.env}
# Where this host keeps Prometheus' and Alertmanager's password, and the
# registry's.
AIART_MONITORING_ENV=${AIART_MONITORING_ENV:-${XDG_CONFIG_HOME:-$HOME/.config}/aiart/monitoring.env}
AIART_REGISTRY_ENV=${AIART_REGISTRY_ENV:-${XDG_CONFIG_HOME:-$HOME/.config}/aiart/registry.env}

ensure_models_network() {
  docker network inspect aiart-models >/dev/null 2>&1 \
    || docker network create --driver overlay --attachable --label aiart.managed-by=aiart aiart-models >/dev/null
}

wait_published() {
  # wait_published PORT PATH SECONDS [CURL OPTION...]: until one of the
  # stack's hosts (AIART_STACK_HOST, space-separated: a service publishes on
  # whichever manager runs it) answers on PORT (with a success status when
  # options are given).
  local port=$1 path=$2 deadline=$((SECONDS + $3)) host
  shift 3
  while :; do
    for host in $AIART_STACK_HOST; do
      curl -s -o /dev/null --max-time 2 "$@" "http://$host:$port/$path" && return 0
    done
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

ensure_store_secrets() {
  # The object store's keys: random, made once, kept as Docker secrets (for
  # the store, the operator and models that ask) and in a file only this
  # user can read (for the CLI). Docker never shows a secret again.
  if docker secret inspect aiart-store-access-key >/dev/null 2>&1; then
    [ -f "$AIART_STORE_ENV" ] || log "note: the store's keys exist as Docker secrets but $AIART_STORE_ENV is missing; the CLI needs AIART_S3_ACCESS_KEY and AIART_S3_SECRET_KEY"
    return
  fi
  local access secret
  access=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Z0-9' | head -c 20)
  secret=$(head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)
  printf '%s' "$access" | docker secret create --label aiart.managed-by=aiart aiart-store-access-key - >/dev/null
  printf '%s' "$secret" | docker secret create --label aiart.managed-by=aiart aiart-store-secret-key - >/dev/null
  mkdir -p "$(dirname "$AIART_STORE_ENV")"
  (umask 077; printf 'AIART_S3_ENDPOINT=localhost:%s\nAIART_S3_ACCESS_KEY=%s\nAIART_S3_SECRET_KEY=%s\n' \
    "$AIART_STORE_PORT" "$access" "$secret" > "$AIART_STORE_ENV")
  log "created the object store's keys (Docker secrets; for the CLI: $AIART_STORE_ENV)"
}

ensure_probe_key() {
  # The key of the operator's probe tokens (one model version each), shared
  # with the auth service only; random, made once, never written elsewhere.
  docker secret inspect aiart-probe-key >/dev/null 2>&1 && return
  head -c 32 /dev/urandom | base64 | tr -d '\n' \
    | docker secret create --label aiart.managed-by=aiart aiart-probe-key - >/dev/null
  log "created the operator's probe key (Docker secret aiart-probe-key)"
}

ensure_password() {
  # ensure_password WHAT SECRET HASHED FORMAT ENV_FILE PREFIX: user aiart's
  # password for WHAT, random, made once. The Docker secret SECRET holds it
  # (for aiart's services that call the server), HASHED holds FORMAT filled
  # with its bcrypt hash (what the server checks), and ENV_FILE, readable by
  # this user only, holds PREFIX_USER and PREFIX_PASSWORD (for people and
  # tests). Docker never shows a secret again.
  local what=$1 secret=$2 hashed=$3 format=$4 env_file=$5 prefix=$6 password hash
  if docker secret inspect "$secret" "$hashed" >/dev/null 2>&1; then
    [ -f "$env_file" ] || log "note: the $what password exists as a Docker secret but $env_file is missing"
    return
  fi
  docker secret inspect "$secret" >/dev/null 2>&1 \
    && die "the Docker secret $secret exists without $hashed; remove the stack and that secret to make both anew"
  password=$(head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
  hash=$(printf '%s' "$password" | "$AIART_ROOT/.venv/bin/python" -c \
    'import bcrypt, sys; print(bcrypt.hashpw(sys.stdin.buffer.read(), bcrypt.gensalt()).decode())') \
    || die "hashing the $what password failed (bcrypt, from .venv)"
  docker secret rm "$hashed" >/dev/null 2>&1 || true
  # shellcheck disable=SC2059  # the format is the caller's
  printf "$format" "$hash" | docker secret create --label aiart.managed-by=aiart "$hashed" - >/dev/null
  printf '%s' "$password" | docker secret create --label aiart.managed-by=aiart "$secret" - >/dev/null
  mkdir -p "$(dirname "$env_file")"
  (umask 077; printf '%s_USER=aiart\n%s_PASSWORD=%s\n' "$prefix" "$prefix" "$password" > "$env_file")
  log "created the $what password (Docker secrets; for you: $env_file)"
}

env_password() {
  # env_password ENV_FILE PREFIX: the password ensure_password wrote there.
  sed -n "s/^$2_PASSWORD=//p" "$1" 2>/dev/null
}

replicas_complete() {
  # replicas_complete SERVICE: every desired task is running ("2/2").
  local replicas
  replicas=$(docker service ls --filter "name=$1" --format '{{.Name}} {{.Replicas}}' | awk -v n="$1" '$1 == n {print $2}')
  [ -n "$replicas" ] && [ "${replicas%%/*}" = "${replicas##*/}" ] && [ "${replicas%%/*}" != 0 ]
}

service_converged() {
  # service_converged SERVICE: its desired tasks all run, and run the
  # service's current spec: after a stack update, the new tasks, not the old
  # ones still counted while they are being replaced.
  # (What a stack update changes; the engine fills other fields in on the
  # service's copy alone.)
  local fields='{{.Image}} {{json .Args}} {{json .Env}} {{json .Mounts}}' want task tasks
  want=$(docker service inspect -f "{{with .Spec.TaskTemplate.ContainerSpec}}$fields{{end}}" "$1" 2>/dev/null) || return 1
  tasks=$(docker service ps -q --filter desired-state=running "$1" 2>/dev/null)
  [ -n "$tasks" ] || return 1
  for task in $tasks; do
    [ "$(docker inspect -f "{{.Status.State}} {{with .Spec.ContainerSpec}}$fields{{end}}" "$task" 2>/dev/null)" = "running $want" ] || return 1
  done
  replicas_complete "$1"
}

ensure_registry_node() {
  if [ -z "$(docker node ls -q --filter node.label=aiart.registry=true)" ]; then
    docker node update --label-add aiart.registry=true "$(docker info --format '{{.Swarm.NodeID}}')" >/dev/null
    log "the registry will run on this node (label aiart.registry=true)"
  fi
}

deploy_stack() {
  # Needs the AIART_*_IMAGE variables (hack/images.sh build_all).
  ensure_models_network
  ensure_registry_node
  ensure_store_secrets
  ensure_probe_key
  # Prometheus' and Alertmanager's web config: basic_auth_users.
  ensure_password monitoring aiart-monitoring-password aiart-monitoring-web \
    'basic_auth_users:\n  aiart: %s\n' "$AIART_MONITORING_ENV" AIART_MONITORING
  # The registry's: an htpasswd file.
  ensure_password registry aiart-registry-password aiart-registry-htpasswd \
    'aiart:%s\n' "$AIART_REGISTRY_ENV" AIART_REGISTRY
  export AIART_CA_BUNDLE=${AIART_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  AIART_CA_HASH=$(sha256sum "$AIART_CA_BUNDLE" | cut -c1-12)
  export AIART_ALERT_RULES=${AIART_ALERT_RULES:-$AIART_ROOT/monitoring/alerts.yml}
  AIART_PROMETHEUS_CONFIG_HASH=$(sha256sum "$AIART_ROOT/monitoring/prometheus.yml" | cut -c1-12)
  AIART_ALERT_RULES_HASH=$(sha256sum "$AIART_ALERT_RULES" | cut -c1-12)
  export AIART_CA_HASH AIART_PROMETHEUS_CONFIG_HASH AIART_ALERT_RULES_HASH
  log "deploying the stack '$AIART_STACK'"
  local out
  out=$(docker stack deploy --resolve-image never -c "$AIART_ROOT/stack.yml" "$AIART_STACK" 2>&1) \
    || { echo "$out" >&2; die "docker stack deploy failed"; }
  wait_published "$AIART_REGISTRY_PORT" "v2/" 120 || die "the registry did not come up"
  wait_published "$AIART_GATEWAY_PORT" "" 120 || die "the gateway (Traefik) did not come up"
  wait_published "$AIART_STORE_PORT" "" 120 || die "the object store did not come up"
  # Prometheus and Alertmanager through the gateway, with their password.
  # (Without the password at hand, any answer will do.)
  local monitoring=() password
  password=$(env_password "$AIART_MONITORING_ENV" AIART_MONITORING)
  [ -z "$password" ] || monitoring=(-f -u "aiart:$password")
  wait_published "$AIART_GATEWAY_PORT" "prometheus/-/ready" 120 "${monitoring[@]}" \
    || die "Prometheus did not come up; see: docker service logs ${AIART_STACK}_prometheus"
  wait_published "$AIART_GATEWAY_PORT" "alertmanager/-/ready" 120 "${monitoring[@]}" \
    || die "Alertmanager did not come up; see: docker service logs ${AIART_STACK}_alertmanager"
  local deadline=$((SECONDS + 120)) service
  for service in operator engine-proxy auth api; do
    until service_converged "${AIART_STACK}_$service"; do
      [ $SECONDS -lt $deadline ] || die "the $service service did not start; see: docker service logs ${AIART_STACK}_$service"
      sleep 0.5
    done
  done
  wait_published "$AIART_GATEWAY_PORT" "api/v1/openapi.json" 60 -f \
    || die "the gateway does not route the API; see: docker service logs ${AIART_STACK}_api"
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
