#!/usr/bin/env bash
# A multi-node Swarm on one machine, for the reliability tests: Docker-in-
# Docker nodes (three managers and two workers by default) built from
# Debian's engine, with no image pulled.
#   hack/cluster.sh up      build the node image, start the nodes, form the
#                           swarm, load aiart's images into the managers
#   hack/cluster.sh stack   deploy aiart's stack on it (registry on the first
#                           manager, every node trusting it)
#   hack/cluster.sh down    remove the nodes, their volumes and network
#   hack/cluster.sh exec N CMD...   run CMD on node N (e.g. aiart-m1)
# Everything it makes carries the label aiart.cluster=$AIART_CLUSTER.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AIART_CLUSTER=${AIART_CLUSTER:-aiart}
AIART_CLUSTER_MANAGERS=${AIART_CLUSTER_MANAGERS:-3}
AIART_CLUSTER_WORKERS=${AIART_CLUSTER_WORKERS:-2}
# A fixed subnet, so that node addresses (and the registry's) are known.
AIART_CLUSTER_SUBNET_PREFIX=${AIART_CLUSTER_SUBNET_PREFIX:-172.30.7}
CLUSTER_NETWORK="$AIART_CLUSTER-cluster"
FIRST_MANAGER_IP="$AIART_CLUSTER_SUBNET_PREFIX.11"
# Every node reaches the registry here (on the first manager, host port).
CLUSTER_REGISTRY="$FIRST_MANAGER_IP:5000"
NODE_PACKAGES=docker.io,iptables,ca-certificates,procps,curl

node_names() {
  local i
  for i in $(seq 1 "$AIART_CLUSTER_MANAGERS"); do echo "$AIART_CLUSTER-m$i"; done
  for i in $(seq 1 "$AIART_CLUSTER_WORKERS"); do echo "$AIART_CLUSTER-w$i"; done
}

node_ip() {
  # m1 -> .11, m2 -> .12 ...; w1 -> .21 ...
  local name=${1#"$AIART_CLUSTER"-} n
  n=${name:1}
  case $name in m*) echo "$AIART_CLUSTER_SUBNET_PREFIX.$((10 + n))" ;; w*) echo "$AIART_CLUSTER_SUBNET_PREFIX.$((20 + n))" ;; esac
}

on() { local node=$1; shift; docker exec "$node" "$@"; }

build_node_image() {
  local base tag
  base=$("$AIART_ROOT/hack/images.sh" debootstrap_image node "$NODE_PACKAGES")
  tag="aiart/node:$( (cat "$AIART_ROOT"/hack/images/node/*; echo "$base") | sha256sum | cut -c1-12)"
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    local ctx; ctx=$(mktemp -d)
    cp -p "$AIART_ROOT"/hack/images/node/* "$ctx/"
    docker build -q --pull=false --build-arg "BASE=$base" -t "$tag" "$ctx" >/dev/null 2>&1 \
      || die "building the node image failed"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

wait_node_engine() {
  local node=$1 deadline=$((SECONDS + 60))
  until on "$node" docker info >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "the engine in $node did not start: docker logs $node"
    sleep 0.5
  done
}

start_node() {
  local node=$1 image=$2
  docker run -d --name "$node" --hostname "$node" \
    --label "aiart.cluster=$AIART_CLUSTER" \
    --network "$CLUSTER_NETWORK" --ip "$(node_ip "$node")" \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt systempaths=unconfined \
    --device-cgroup-rule 'a *:* rwm' --cgroupns private \
    --tmpfs /run --tmpfs /tmp \
    --mount "type=volume,source=$node-docker,target=/var/lib/docker,volume-label=aiart.cluster=$AIART_CLUSTER" \
    -e "AIART_NODE_REGISTRY=$CLUSTER_REGISTRY" \
    "$image" --host tcp://0.0.0.0:2375 >/dev/null
  # The engine's API on the cluster's bridge, without TLS: this machine
  # drives the nodes through it (a test harness, never a production node).
}

load_images() {
  # load_images IMAGE...: into every manager (the operator builds model
  # images on whichever manager it runs; workers pull from the registry).
  # One archive in a known place, not a new temporary file each time: a run
  # killed while it loads leaves at most this one (1-2 GB), replaced by the next.
  local archive="$AIART_STATE/$AIART_CLUSTER-images.tar"
  as_root mkdir -p "$AIART_STATE"
  docker save "$@" -o "$archive"
  local node pids=()
  for node in $(node_names | grep -- "-m"); do
    docker exec -i "$node" docker load -q < "$archive" >/dev/null &
    pids+=($!)
  done
  local pid
  for pid in "${pids[@]}"; do wait "$pid" || die "loading images into a node failed"; done
  rm -f "$archive"
}

cluster_up() {
  ensure_engine
  local image; image=$(build_node_image)
  docker network inspect "$CLUSTER_NETWORK" >/dev/null 2>&1 || docker network create \
    --driver bridge --subnet "$AIART_CLUSTER_SUBNET_PREFIX.0/24" \
    --label "aiart.cluster=$AIART_CLUSTER" "$CLUSTER_NETWORK" >/dev/null
  local node
  for node in $(node_names); do
    if ! docker container inspect "$node" >/dev/null 2>&1; then
      start_node "$node" "$image"
    elif [ "$(docker container inspect -f '{{.State.Running}}' "$node")" != true ]; then
      docker start "$node" >/dev/null
    fi
  done
  for node in $(node_names); do wait_node_engine "$node"; done
  local first="$AIART_CLUSTER-m1"
  if [ "$(on "$first" docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    # Fast failure detection: a lost node's tasks move within seconds.
    on "$first" docker swarm init --advertise-addr "$FIRST_MANAGER_IP" \
      --dispatcher-heartbeat 1s >/dev/null
  fi
  local manager_token worker_token
  manager_token=$(on "$first" docker swarm join-token -q manager)
  worker_token=$(on "$first" docker swarm join-token -q worker)
  for node in $(node_names); do
    [ "$(on "$node" docker info --format '{{.Swarm.LocalNodeState}}')" = active ] && continue
    local token=$worker_token
    [[ $node == *-m* ]] && token=$manager_token
    on "$node" docker swarm join --advertise-addr "$(node_ip "$node")" --token "$token" \
      "$FIRST_MANAGER_IP:2377" >/dev/null
  done
  # The registry runs where every node was told to find it.
  on "$first" docker node update --label-add aiart.registry=true "$first" >/dev/null
  wait_nodes_ready "$first"
  log "cluster '$AIART_CLUSTER' up: $(on "$first" docker node ls --format '{{.Hostname}}/{{.ManagerStatus}}' | tr '\n' ' ')"
}

wait_nodes_ready() {
  # A swarm resumed from old state can keep a node Down for good: once, the
  # first manager's own agent lost its session and never registered again
  # (Leader, yet Down; nothing could be scheduled on it). Say so rather than
  # hand the tests a swarm that cannot run the registry.
  local first=$1 deadline=$((SECONDS + 90)) listing down
  while :; do
    # A manager that cannot list nodes (an election) is "not yet", not a failure.
    listing=$(on "$first" docker node ls --format '{{.Hostname}} {{.Status}}' 2>/dev/null) \
      || listing="swarm-not-answering Unknown"
    down=$(awk '$2 != "Ready" {print $1}' <<<"$listing" | paste -sd' ' -)
    [ -n "$down" ] || return 0
    [ $SECONDS -lt $deadline ] \
      || die "nodes not Ready after 90 s: $down (start afresh: hack/cluster.sh down, then up)"
    sleep 1
  done
}

manager_ips() {
  local node
  for node in $(node_names | grep -- "-m"); do node_ip "$node"; done | paste -sd' ' -
}

cluster_stack() {
  # aiart's stack on the cluster, deployed by hack/stack.sh through the
  # first manager's engine API.
  local images
  images=$("$AIART_ROOT/hack/images.sh" build_all) || die "building the images failed"
  set -a; eval "$images"; set +a
  log "loading aiart's images into the managers"
  load_images "$AIART_OPERATOR_IMAGE" "$AIART_TRAEFIK_IMAGE" "$AIART_REGISTRY_IMAGE" \
    "$AIART_STORE_IMAGE" "$AIART_PROMETHEUS_IMAGE" "$AIART_ALERTMANAGER_IMAGE" \
    "$AIART_BROKER_IMAGE" "$AIART_BASE_IMAGE" "$AIART_RUNTIME_IMAGE"
  export DOCKER_HOST="tcp://$FIRST_MANAGER_IP:2375"
  export AIART_REGISTRY_ADDRESS=$CLUSTER_REGISTRY
  # Models on the workers, as a site keeps them off its managers.
  export AIART_MODEL_CONSTRAINTS=node.role==worker
  AIART_STACK_HOST=$(manager_ips)
  export AIART_STACK_HOST
  export AIART_STORE_ENV="$AIART_STATE/$AIART_CLUSTER-store.env"
  export AIART_MONITORING_ENV="$AIART_STATE/$AIART_CLUSTER-monitoring.env"
  export AIART_REGISTRY_ENV="$AIART_STATE/$AIART_CLUSTER-registry.env"
  export AIART_BROKER_ENV="$AIART_STATE/$AIART_CLUSTER-broker.env"
  # Plain HTTP on the gateway (what a site ending TLS in front of it runs):
  # the scenarios are about failures, not certificates. Its own local CA,
  # and none of the calling shell's TLS settings.
  unset AIART_PUBLIC_URL AIART_TLS_CERT AIART_TLS_KEY AIART_TLS_CA
  export AIART_GATEWAY_TLS=false AIART_TLS_DIR="$AIART_STATE/$AIART_CLUSTER-tls"
  source "$AIART_ROOT/hack/stack.sh"
  deploy_stack
  log "aiart's stack runs on cluster '$AIART_CLUSTER' (DOCKER_HOST=$DOCKER_HOST)"
}

cluster_down() {
  local ids
  ids=$(docker ps -aq --filter "label=aiart.cluster=$AIART_CLUSTER")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  ids=$(docker volume ls -q --filter "label=aiart.cluster=$AIART_CLUSTER")
  [ -z "$ids" ] || docker volume rm $ids >/dev/null
  docker network rm "$CLUSTER_NETWORK" >/dev/null 2>&1 || true
  log "cluster '$AIART_CLUSTER' removed"
}

case "${1:-}" in
  up) cluster_up ;;
  stack) cluster_stack ;;
  down) cluster_down ;;
  exec) shift; node=$1; shift; on "$node" "$@" ;;
  load) shift; load_images "$@" ;;
  "") ;;
  *) die "usage: hack/cluster.sh up|stack|down|exec NODE CMD...|load IMAGE..." ;;
esac
