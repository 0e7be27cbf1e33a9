#!/usr/bin/env bash
# Deploys aiart's stack (stack.yml) on the local swarm and waits for it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AIART_STACK=${AIART_STACK:-aiart}
AIART_GATEWAY_PORT=${AIART_GATEWAY_PORT:-8080}
AIART_GATEWAY_TLS_PORT=${AIART_GATEWAY_TLS_PORT:-8443}
AIART_REGISTRY_PORT=${AIART_REGISTRY_PORT:-5000}
# HTTPS on the gateway, plain HTTP redirected to it. AIART_GATEWAY_TLS=false
# serves plain HTTP too (a site that ends TLS in front of the gateway).
AIART_GATEWAY_TLS=${AIART_GATEWAY_TLS:-true}
if [ "$AIART_GATEWAY_TLS" = true ]; then
  AIART_GATEWAY_ENTRYPOINTS=websecure,internal
  default_public_url=https://localhost:$AIART_GATEWAY_TLS_PORT
else
  AIART_GATEWAY_ENTRYPOINTS=web,websecure,internal
  default_public_url=http://localhost:$AIART_GATEWAY_PORT
fi
# The site's domain for the gateway: every route answers that host name only
# (empty: any), and the local certificate names it.
AIART_GATEWAY_HOST=${AIART_GATEWAY_HOST:-}
[[ -z $AIART_GATEWAY_HOST || $AIART_GATEWAY_HOST =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] \
  || die "AIART_GATEWAY_HOST must be a DNS name, not '$AIART_GATEWAY_HOST'"
AIART_GATEWAY_HOST_RULE=${AIART_GATEWAY_HOST:+Host(\`$AIART_GATEWAY_HOST\`) && }
if [ -n "$AIART_GATEWAY_HOST" ]; then
  default_public_url=${default_public_url/localhost/$AIART_GATEWAY_HOST}
  AIART_TLS_HOSTS="${AIART_TLS_HOSTS:-} $AIART_GATEWAY_HOST"
fi
export AIART_GATEWAY_HOST AIART_GATEWAY_HOST_RULE AIART_TLS_HOSTS
# The address users reach the gateway by; status endpoints are built from it.
AIART_PUBLIC_URL=${AIART_PUBLIC_URL:-$default_public_url}
# The gateway's certificate: a site's own (AIART_TLS_CERT, AIART_TLS_KEY),
# else one from a local CA kept here (ca.crt is what clients trust).
AIART_TLS_DIR=${AIART_TLS_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/aiart/tls}
export AIART_GATEWAY_TLS AIART_GATEWAY_TLS_PORT AIART_GATEWAY_ENTRYPOINTS AIART_TLS_DIR
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
# The message broker's password (user aiart), for devices, people and tests.
AIART_BROKER_ENV=${AIART_BROKER_ENV:-${XDG_CONFIG_HOME:-$HOME/.config}/aiart/broker.env}

ensure_models_network() {
  docker network inspect aiart-models >/dev/null 2>&1 \
    || docker network create --driver overlay --attachable --label aiart.managed-by=aiart aiart-models >/dev/null
}

wait_gateway() {
  # wait_gateway PATH SECONDS [CURL OPTION...]: wait_published, through the
  # gateway as users reach it (HTTPS when it is on, checking the certificate;
  # under the gateway's host name when routes answer that one only).
  local host=()
  [ -z "$AIART_GATEWAY_HOST" ] || host=(-H "Host: $AIART_GATEWAY_HOST")
  if [ "$AIART_GATEWAY_TLS" = true ]; then
    wait_published "https:$AIART_GATEWAY_TLS_PORT" "$@" "${host[@]}" ${AIART_TLS_CA:+--cacert "$AIART_TLS_CA"}
  else
    wait_published "$AIART_GATEWAY_PORT" "$@" "${host[@]}"
  fi
}

wait_published() {
  # wait_published [SCHEME:]PORT PATH SECONDS [CURL OPTION...]: until one
  # of the stack's hosts (AIART_STACK_HOST, space-separated: a service
  # publishes on whichever manager runs it) answers on PORT (with a success
  # status when options are given).
  local port=${1##*:} scheme=http path=$2 deadline=$((SECONDS + $3)) host
  [ "$port" = "$1" ] || scheme=${1%%:*}
  shift 3
  while :; do
    for host in $AIART_STACK_HOST; do
      curl -s -o /dev/null --max-time 2 "$@" "$scheme://$host:$port/$path" && return 0
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

ensure_key() {
  # ensure_key SECRET WHAT: a random key, made once, kept as the Docker
  # secret SECRET only (aiart's services read it; nobody needs to type it).
  docker secret inspect "$1" >/dev/null 2>&1 && return
  head -c 32 /dev/urandom | base64 | tr -d '\n' \
    | docker secret create --label aiart.managed-by=aiart "$1" - >/dev/null
  log "created $2 (Docker secret $1)"
}

ensure_password() {
  # ensure_password WHAT SECRET ENV_FILE PREFIX: user aiart's password for
  # WHAT, random, made once. The Docker secret SECRET holds it (for aiart's
  # services that call the server); ENV_FILE, readable by this user only,
  # holds PREFIX_USER and PREFIX_PASSWORD (for people and tests); the file
  # beside it, <ENV_FILE without .env>.htpasswd, holds its bcrypt hash (what
  # the servers check; stack.yml makes secrets of it, named by content). Sets
  # PREFIX_HTPASSWD and PREFIX_HTPASSWD_HASH.
  local what=$1 secret=$2 env_file=$3 prefix=$4 password hash
  local hashed=${3%.env}.htpasswd
  password=$(env_password "$env_file" "$prefix")
  if [ -z "$password" ]; then
    if docker secret inspect "$secret" >/dev/null 2>&1; then
      # Docker never shows a secret again: the hash on file must do.
      [ -f "$hashed" ] || die "the $what password exists as the Docker secret $secret, but $env_file is missing; remove the stack and that secret to make a new one"
      log "note: the $what password exists as a Docker secret but $env_file is missing"
    else
      password=$(head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
      mkdir -p "$(dirname "$env_file")"
      (umask 077; printf '%s_USER=aiart\n%s_PASSWORD=%s\n' "$prefix" "$prefix" "$password" > "$env_file")
      log "created the $what password (a Docker secret; for you: $env_file)"
    fi
  fi
  if [ -n "$password" ]; then
    docker secret inspect "$secret" >/dev/null 2>&1 \
      || printf '%s' "$password" | docker secret create --label aiart.managed-by=aiart "$secret" - >/dev/null
    # bcrypt's lowest cost (4): the password is 32 random characters, which no
    # cost makes easier to guess, and the registry checks it on every request
    # of a push (cost 12 took a quarter of a second each).
    if ! grep -q '\$2b\$04\$' "$hashed" 2>/dev/null; then
      hash=$(printf '%s' "$password" | "$AIART_ROOT/.venv/bin/python" -c \
        'import bcrypt, sys; print(bcrypt.hashpw(sys.stdin.buffer.read(), bcrypt.gensalt(4)).decode())') \
        || die "hashing the $what password failed (bcrypt, from .venv)"
      (umask 077; printf 'aiart:%s\n' "$hash" > "$hashed")
    fi
  fi
  printf -v "${prefix}_HTPASSWD" '%s' "$hashed"
  printf -v "${prefix}_HTPASSWD_HASH" '%s' "$(sha256sum "$hashed" | cut -c1-12)"
  export "${prefix}_HTPASSWD" "${prefix}_HTPASSWD_HASH"
}

env_password() {
  # env_password ENV_FILE PREFIX: the password ensure_password wrote there
  # (nothing, and success, when there is no such file).
  [ ! -f "$1" ] || sed -n "s/^$2_PASSWORD=//p" "$1"
}

ensure_gateway_certificate() {
  # A site's certificate as given, else the local CA's (made once) for
  # localhost, 127.0.0.1, this host's name, the stack's hosts and
  # AIART_TLS_HOSTS; made anew when that list changes.
  if [ -n "${AIART_TLS_CERT:-}" ] || [ -n "${AIART_TLS_KEY:-}" ]; then
    [ -f "${AIART_TLS_CERT:-}" ] && [ -f "${AIART_TLS_KEY:-}" ] \
      || die "AIART_TLS_CERT and AIART_TLS_KEY must both name PEM files"
  else
    command -v openssl >/dev/null || apt_install openssl
    local dir=$AIART_TLS_DIR host sans
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/ca.crt" ]; then
      (umask 077; openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 3650 -subj "/CN=aiart local CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null) || die "making the local CA failed"
      log "made a local CA for the gateway's certificate: clients trust $dir/ca.crt"
    fi
    sans="DNS:localhost,IP:127.0.0.1,DNS:$(hostname)"
    for host in $AIART_STACK_HOST ${AIART_TLS_HOSTS:-}; do
      if [[ $host =~ ^[0-9.]+$ ]]; then sans="$sans,IP:$host"; else sans="$sans,DNS:$host"; fi
    done
    issue_certificate ca gateway "$sans" "the gateway"
    AIART_TLS_CERT=$dir/gateway.crt
    AIART_TLS_KEY=$dir/gateway.key
    AIART_TLS_CA=$dir/ca.crt
  fi
  AIART_TLS_CERT_HASH=$(sha256sum "$AIART_TLS_CERT" | cut -c1-12)
  AIART_TLS_KEY_HASH=$(sha256sum "$AIART_TLS_KEY" | cut -c1-12)
  AIART_GATEWAY_TLS_HASH=$(sha256sum "$AIART_ROOT/gateway/tls.yml" | cut -c1-12)
  export AIART_TLS_CA=${AIART_TLS_CA:-}
  export AIART_TLS_CERT AIART_TLS_KEY AIART_TLS_CERT_HASH AIART_TLS_KEY_HASH AIART_GATEWAY_TLS_HASH
}

ensure_acme() {
  # ACME (stack.yml): the gateway's resolver is used only when a name is
  # given; its CA is Let's Encrypt's unless AIART_ACME_CA_SERVER names
  # another (one with a private root: put it in AIART_CA_BUNDLE).
  if [ -n "${AIART_ACME_DOMAIN:-}" ]; then
    [[ $AIART_ACME_DOMAIN =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] \
      || die "AIART_ACME_DOMAIN must be a DNS name, not '$AIART_ACME_DOMAIN'"
    export AIART_ACME_RESOLVER=aiart AIART_ACME_STORAGE=acme
    local ca=${AIART_ACME_CA_SERVER:-https://acme-v02.api.letsencrypt.org/directory}
    log "the gateway gets its certificate for $AIART_ACME_DOMAIN from $ca"
  else
    export AIART_ACME_RESOLVER= AIART_ACME_STORAGE=off
  fi
}

issue_certificate() {
  # issue_certificate CA NAME SANS WHAT: $AIART_TLS_DIR/NAME.crt and .key for
  # SANS (openssl's subjectAltName list), signed by $AIART_TLS_DIR/CA.crt;
  # made anew when SANS change.
  local dir=$AIART_TLS_DIR ca=$1 name=$2 sans=$3
  [ -f "$dir/$name.crt" ] && [ "$(cat "$dir/$name.sans" 2>/dev/null)" = "$sans" ] && return
  (umask 077
   openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
     -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=aiart $name" 2>/dev/null \
   && openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
     -CAcreateserial -out "$dir/$name.crt" -days 825 -extfile <(printf '%s\n' \
       "subjectAltName=$sans" "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
       "extendedKeyUsage=serverAuth" "subjectKeyIdentifier=hash" \
       "authorityKeyIdentifier=keyid,issuer") 2>/dev/null) \
    || die "making the certificate of $4 failed"
  printf '%s' "$sans" > "$dir/$name.sans"
  log "made the certificate of $4 for ${sans//DNS:/} (signed by $dir/$ca.crt)"
}

ensure_internal_certificates() {
  # The certificates of aiart's own services that take credentials over the
  # network: the auth service and the API (callers' keys and tokens, from
  # the gateway) and the registry (its password, from every node's engine).
  # An internal CA, made once for that alone, signs them: Traefik trusts
  # only it on those hops.
  command -v openssl >/dev/null || apt_install openssl
  local dir=$AIART_TLS_DIR sans="" name host
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ ! -f "$dir/internal-ca.crt" ]; then
    (umask 077; openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$dir/internal-ca.key" -out "$dir/internal-ca.crt" -days 3650 \
      -subj "/CN=aiart internal CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectKeyIdentifier=hash" 2>/dev/null) || die "making the internal CA failed"
    log "made the internal CA of aiart's own services ($dir/internal-ca.crt)"
  fi
  for name in auth api "${AIART_STACK}_auth" "${AIART_STACK}_api"; do
    sans="${sans:+$sans,}DNS:$name"
  done
  issue_certificate internal-ca internal "$sans" "the auth service and the API"
  # The registry as every node's engine and this script reach it, and as
  # the API does on the internal network.
  sans="DNS:localhost,IP:127.0.0.1,DNS:registry,DNS:${AIART_STACK}_registry"
  for host in "${AIART_REGISTRY_ADDRESS%:*}" $AIART_STACK_HOST; do
    if [[ $host =~ ^[0-9.]+$ ]]; then name="IP:$host"; else name="DNS:$host"; fi
    [[ ,$sans, == *",$name,"* ]] || sans="$sans,$name"
  done
  issue_certificate internal-ca registry "$sans" "the registry"
  AIART_INTERNAL_CA=$dir/internal-ca.crt
  local file
  for file in internal-ca.crt internal.crt internal.key registry.crt registry.key; do
    # AIART_INTERNAL_CRT_HASH, AIART_REGISTRY_KEY_HASH, ...: secret names.
    name=${file//[.-]/_}
    name=AIART_${name^^}_HASH
    printf -v "$name" '%s' "$(sha256sum "$dir/$file" | cut -c1-12)"
    export "${name?}"
  done
  export AIART_INTERNAL_CA AIART_TLS_DIR
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
  # The key of the operator's probe tokens (one model version each), shared
  # with the auth service only.
  ensure_key aiart-probe-key "the operator's probe key"
  # The key models' own store keys derive from, shared by the operator and
  # the store gateway only (operator/aiart/store/policy.py).
  ensure_key aiart-store-gateway-key "the store gateway's key"
  # Prometheus, Alertmanager and the gateway's metrics share one password;
  # the first two read its hash from a web config made of the htpasswd line.
  ensure_password monitoring aiart-monitoring-password "$AIART_MONITORING_ENV" AIART_MONITORING
  AIART_MONITORING_WEB=${AIART_MONITORING_HTPASSWD%.htpasswd}.web.yml
  (umask 077; sed -n 's/^aiart:\(.*\)$/basic_auth_users:\n  aiart: \1/p' "$AIART_MONITORING_HTPASSWD" \
    > "$AIART_MONITORING_WEB")
  AIART_MONITORING_WEB_HASH=$(sha256sum "$AIART_MONITORING_WEB" | cut -c1-12)
  export AIART_MONITORING_WEB AIART_MONITORING_WEB_HASH
  ensure_password registry aiart-registry-password "$AIART_REGISTRY_ENV" AIART_REGISTRY
  # The broker makes its own (PBKDF2) password file from the secret at start.
  ensure_password broker aiart-broker-password "$AIART_BROKER_ENV" AIART_BROKER
  ensure_gateway_certificate
  ensure_acme
  ensure_internal_certificates
  export AIART_CA_BUNDLE=${AIART_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  AIART_CA_HASH=$(sha256sum "$AIART_CA_BUNDLE" | cut -c1-12)
  export AIART_ALERT_RULES=${AIART_ALERT_RULES:-$AIART_ROOT/monitoring/alerts.yml}
  AIART_PROMETHEUS_CONFIG_HASH=$(sha256sum "$AIART_ROOT/monitoring/prometheus.yml" | cut -c1-12)
  AIART_ALERT_RULES_HASH=$(sha256sum "$AIART_ALERT_RULES" | cut -c1-12)
  export AIART_CA_HASH AIART_PROMETHEUS_CONFIG_HASH AIART_ALERT_RULES_HASH
  log "deploying the stack '$AIART_STACK'"
  local out attempt
  for attempt in 1 2 3 4 5; do
    out=$(docker stack deploy --resolve-image never -c "$AIART_ROOT/stack.yml" "$AIART_STACK" 2>&1) \
      && break
    # Swarm refuses an update made from a service's older version: the
    # service changed between the deploy's read and its write (a rolling
    # update still under way records its progress in the service). The
    # deploy is idempotent: the next one reads the new version.
    grep -q "update out of sequence" <<<"$out" && [ "$attempt" -lt 5 ] \
      || { echo "$out" >&2; die "docker stack deploy failed"; }
    log "a service changed under the deploy (update out of sequence): deploying again"
    sleep 1
  done
  wait_published "https:$AIART_REGISTRY_PORT" "v2/" 120 --cacert "$AIART_INTERNAL_CA" \
    || die "the registry did not come up"
  wait_published "$AIART_GATEWAY_PORT" "" 120 || die "the gateway (Traefik) did not come up"
  wait_published "$AIART_STORE_PORT" "" 120 || die "the object store did not come up"
  # Prometheus and Alertmanager through the gateway, with their password.
  # (Without the password at hand, any answer will do.)
  local monitoring=() password
  password=$(env_password "$AIART_MONITORING_ENV" AIART_MONITORING)
  [ -z "$password" ] || monitoring=(-f -u "aiart:$password")
  wait_gateway "prometheus/-/ready" 120 "${monitoring[@]}" \
    || die "Prometheus did not come up; see: docker service logs ${AIART_STACK}_prometheus"
  wait_gateway "alertmanager/-/ready" 120 "${monitoring[@]}" \
    || die "Alertmanager did not come up; see: docker service logs ${AIART_STACK}_alertmanager"
  local deadline=$((SECONDS + 120)) service
  for service in operator engine-proxy auth api; do
    until service_converged "${AIART_STACK}_$service"; do
      [ $SECONDS -lt $deadline ] || die "the $service service did not start; see: docker service logs ${AIART_STACK}_$service"
      sleep 0.5
    done
  done
  wait_gateway "api/v1/openapi.json" 60 -f \
    || die "the gateway does not route the API; see: docker service logs ${AIART_STACK}_api"
  prune_replaced
}

prune_replaced() {
  # The stack's configs and secrets are named by content: each change of a
  # certificate, password hash or configuration file leaves the old one
  # behind. Remove those no service of the stack names any more; the engine
  # refuses while an old task still uses one, and the next deploy tries again.
  local services used kind name
  services=$(docker service ls -q --filter "label=com.docker.stack.namespace=$AIART_STACK")
  [ -n "$services" ] || return 0
  # shellcheck disable=SC2086  # one id per word
  used=" $(docker service inspect $services --format '{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}' | tr '\n' ' ') "
  for kind in config secret; do
    for name in $(docker "$kind" ls -q --filter "label=com.docker.stack.namespace=$AIART_STACK" --format '{{.Name}}'); do
      [[ $used == *" $name "* ]] || docker "$kind" rm "$name" >/dev/null 2>&1 || true
    done
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
