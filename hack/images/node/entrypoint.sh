#!/bin/sh
# A Swarm node in a container (hack/cluster.sh): Debian's Docker Engine,
# without --privileged (which fails on these hosts). The container gets the
# capabilities and devices it needs; /sys and the cgroup mounts come
# read-only, and the engine needs to write them.
set -eu
mount -o remount,rw /sys 2>/dev/null || true
# A cgroup v1 hierarchy cannot be remounted read-write in place ("busy"):
# mount it afresh with the same controllers (the container has its own
# cgroup namespace, so the fresh mount is this node's own subtree).
awk '$3 == "cgroup" {print $2, $4}' /proc/mounts | while read -r path options; do
  controllers=$(echo "$options" | tr ',' '\n' \
    | grep -Ev '^(ro|rw|nosuid|nodev|noexec|relatime)$' | paste -sd, -)
  umount "$path" && mount -t cgroup -o "$controllers" cgroup "$path"
done
# cgroup v2: one mount.
if awk '$3 == "cgroup2" {found=1} END {exit !found}' /proc/mounts; then
  mount -o remount,rw /sys/fs/cgroup
fi
mkdir -p /etc/docker
# The registry every node pulls model images from, over plain HTTP.
if [ -n "${AIART_NODE_REGISTRY:-}" ]; then
  printf '{"insecure-registries": ["%s"]}\n' "$AIART_NODE_REGISTRY" > /etc/docker/daemon.json
fi
exec dockerd --host unix:///var/run/docker.sock "$@"
