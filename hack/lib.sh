#!/usr/bin/env bash
# Shared helpers for aiart's set-up scripts: engine, swarm, virtual
# environment. Every step is idempotent: it checks first and acts only when
# something is missing, so a second run is fast and changes nothing.
set -euo pipefail
shopt -s inherit_errexit

AIART_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AIART_CACHE=${AIART_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aiart}
AIART_STATE=${AIART_STATE:-/var/lib/aiart}
export AIART_ROOT AIART_CACHE

log() { printf '\033[1m[aiart]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[aiart] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  # Install Debian packages that are missing; one apt-get update at most.
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

engine_answers() { docker info >/dev/null 2>&1; }

ensure_engine() {
  if engine_answers; then return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  if ! engine_answers; then
    log "starting the Docker Engine"
    as_root mkdir -p "$AIART_STATE"
    # Started in its own session so that it outlives this script; its pid is
    # kept so that only this engine is ever stopped by aiart's scripts.
    as_root setsid dockerd >"$AIART_STATE/dockerd.log" 2>&1 < /dev/null &
    echo $! | as_root tee "$AIART_STATE/dockerd.pid" >/dev/null
    for _ in $(seq 1 120); do
      engine_answers && break
      sleep 0.5
    done
    engine_answers || die "the Docker Engine did not start; see $AIART_STATE/dockerd.log"
  fi
}

ensure_swarm() {
  local state
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  if [ "$state" != active ]; then
    log "initialising a single-node swarm"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  fi
  [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] \
    || die "this node is in a swarm but is not a manager; run aiart on a manager"
}

ensure_venv() {
  # .venv holds the aiart package (editable), its tools and scikit-learn.
  local venv="$AIART_ROOT/.venv" stamp
  stamp=$(cat "$AIART_ROOT/pyproject.toml" | sha256sum | cut -c1-16)
  if [ -f "$venv/.aiart-stamp" ] && [ "$(cat "$venv/.aiart-stamp")" = "$stamp" ]; then
    return 0
  fi
  log "preparing the virtual environment at .venv"
  # Debian's python3 needs python3-venv for `python3 -m venv`.
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local out
  out=$({ "$venv/bin/pip" install -q --upgrade pip && "$venv/bin/pip" install -q -e "$AIART_ROOT[dev]"; } 2>&1) \
    || { echo "$out" >&2; die "installing aiart into .venv failed"; }
  echo "$stamp" > "$venv/.aiart-stamp"
}
