"""What the running stack costs the node at rest: the CPU share of the
node's Docker Engine and of each of the swarm's services over a window
(run it on the node, as root, with nothing else asked of the stack).

A service's share is that of every process in its containers' control
groups (the model containers' health checks included: the engine runs them
there), read from /proc before and after the window.

Run: python3 bench/idle_cpu.py [--seconds 30] [--windows 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import docker

ENGINE = "engine (dockerd)"


def owners(engine: docker.DockerClient) -> dict[str, str]:
    """Container id -> the name of its swarm service (or of the container)."""
    out = {}
    for container in engine.api.containers():
        labels = container.get("Labels") or {}
        out[container["Id"]] = labels.get("com.docker.swarm.service.name") or \
            container["Names"][0].lstrip("/")
    return out


def ticks(containers: dict[str, str], engine_pid: str) -> dict[str, tuple[str, int]]:
    """pid -> (owner, CPU ticks used so far), for the engine and every
    process in a container."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            groups = Path(f"/proc/{pid}/cgroup").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        owner = ENGINE if pid == engine_pid else next(
            (name for cid, name in containers.items() if cid in groups), None)
        if owner:
            out[pid] = (owner, int(fields[11]) + int(fields[12]))  # utime + stime
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--windows", type=int, default=2)
    args = parser.parse_args()
    engine = docker.from_env()
    engine_pid = Path("/var/run/docker.pid").read_text().strip()
    hertz = os.sysconf("SC_CLK_TCK")
    for _ in range(args.windows):
        containers = owners(engine)
        before = ticks(containers, engine_pid)
        time.sleep(args.seconds)
        after = ticks(containers, engine_pid)
        used: dict[str, int] = {}
        for pid, (owner, now) in after.items():
            # A process started in the window counts from its start.
            used[owner] = used.get(owner, 0) + now - before.get(pid, (owner, 0))[1]
        total = sum(used.values())
        shares = sorted(used.items(), key=lambda item: -item[1])
        print(f"{args.seconds:.0f} s, % of one core: all {total / hertz / args.seconds * 100:.1f}; "
              + ", ".join(f"{name} {value / hertz / args.seconds * 100:.1f}"
                          for name, value in shares if value))


if __name__ == "__main__":
    main()
