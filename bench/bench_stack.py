"""What the benchmarks that deploy models on the running stack share."""

from __future__ import annotations

import time
from collections.abc import Iterable

import docker


def remove_run(engine: docker.DockerClient, run: str, models: Iterable[str]) -> None:
    """Every config one benchmark run made (labelled ``aiart.bench=<run>``),
    models first so that the operator removes their services; then, once
    the services are gone, the models' catalog records (the catalog keeps
    its records on purpose; a benchmark's are noise)."""
    names = set(models)
    configs = engine.configs.list(filters={"label": f"aiart.bench={run}"})
    for config in sorted(configs, key=lambda c: "aiart.model" not in c.attrs["Spec"]["Labels"]):
        config.remove()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
            engine.services.list(filters={"label": f"aiart.model={name}"}) for name in names):
        time.sleep(1)
    for config in engine.configs.list(filters={"label": "aiart.catalog"}):
        if config.attrs["Spec"]["Labels"].get("aiart.catalog.model") in names:
            config.remove()


def broker_credentials() -> tuple[str, str]:
    """The broker's user and password, from the file hack/stack.sh wrote."""
    import os
    from pathlib import Path

    path = os.environ.get("AIART_BROKER_ENV") or str(
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "aiart/broker.env")
    values = dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
    return values["AIART_BROKER_USER"], values["AIART_BROKER_PASSWORD"]
