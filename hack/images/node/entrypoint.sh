#!/bin/sh
# A Swarm node in a container (hack/cluster.sh): Debian's Docker Engine,
# without --privileged (which fails on these hosts). The container gets the
# capabilities and devices it needs; /sys and the cgroup mounts come
# read-only, and the engine needs to write them.
set -eu
mount -o remount,rw /sys 2>/dev/null || true
for m in $(awk '$3 ~ /^cgroup/ {print $2}' /proc/mounts); do
  mount -o remount,rw "$m" 2>/dev/null || true
done
mkdir -p /etc/docker
# The registry every node pulls model images from, over plain HTTP.
if [ -n "${AIART_NODE_REGISTRY:-}" ]; then
  printf '{"insecure-registries": ["%s"]}\n' "$AIART_NODE_REGISTRY" > /etc/docker/daemon.json
fi
exec dockerd --host unix:///var/run/docker.sock "$@"
