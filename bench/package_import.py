"""Import-to-Ready of a model package on the running stack (./hack/up.sh
first), with its base cached: the runtime's layers in the registry and on
the node, as on a site that runs models of that runtime already.

A model is declared, served and exported with ``aiart export`` (signed with
a key made for the run, trusted for the run); then, round after round, it is
removed and imported again with ``aiart import`` (the CLI, as a site's admin
runs it), timed from the command's start to the command's end and to the
version's status Ready. Beside it, in the same run, the floor under it: the
same version declared again by hand (its config created once more, nothing
imported), timed from the config's creation to Ready.

The multi-node figure (two swarms that share nothing) is the chaos
scenario's: tests/chaos/test_packages.py.

Run: .venv/bin/python bench/package_import.py [--rounds 5]
Everything it creates is labelled aiart.bench or removed by name at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
from aiart.core import labels as L
from bench_stack import remove_run
from cold_start import artifact


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(what)


class Site:
    def __init__(self, engine: docker.DockerClient, config_home: Path) -> None:
        self.engine = engine
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
        # The stack's files where hack/stack.sh leaves them, not in the
        # run's own config folder.
        home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "aiart"
        for name, file in (("AIART_REGISTRY_ENV", "registry.env"),
                           ("AIART_STORE_ENV", "store.env"), ("AIART_TLS_DIR", "tls")):
            self.env.setdefault(name, str(home / file))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "aiart.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"aiart {' '.join(args)}: {done.stderr}")
        return done

    def status(self, config: str) -> str:
        try:
            labels = self.engine.configs.get(config).attrs["Spec"]["Labels"] or {}
        except docker.errors.NotFound:
            return ""
        if labels.get(L.STATUS) == "Failed":
            raise RuntimeError(f"{config} failed: {labels.get(L.STATUS_MESSAGE)}")
        return str(labels.get(L.STATUS, ""))

    def remove(self, name: str) -> None:
        """The version's config, and the model file an import put in a config."""
        for config in [*self.engine.configs.list(filters={"label": f"{L.MODEL}={name}"}),
                       *self.engine.configs.list(filters={"label": f"{L.ARTIFACT_OF}={name}"})]:
            config.remove()
        wait(lambda: not self.engine.services.list(filters={"label": f"{L.MODEL}={name}"}),
             120, f"{name}'s service to go")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    engine = docker.from_env()
    run = uuid.uuid4().hex[:6]
    name = f"b{run}-pkg"
    labels = {"aiart.bench": run}
    with tempfile.TemporaryDirectory() as folder:
        site = Site(engine, Path(folder))
        key = f"bench-{run}"
        try:
            engine.configs.create(name=f"{name}-model-1", data=artifact("sklearn"),
                                  labels={**labels, L.ARTIFACT_OF: name})
            manifest = (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, "
                        f"version: '1'}}\nspec:\n  runtime: sklearn\n  artifact: "
                        f"{{uri: 'config://{name}-model-1'}}\n").encode()
            engine.configs.create(name=f"{name}-1", data=manifest,
                                  labels={**labels, L.MODEL: name})
            wait(lambda: site.status(f"{name}-1") == "Ready", 600, f"{name} to be Ready")
            package = Path(folder) / "model.aiart"
            site.cli("packages", "key", "create", key)
            site.cli("export", name, "-o", str(package))
            site.cli("trust", "add", key, str(Path(folder) / "aiart/signing" / f"{key}.pub"))
            site.remove(name)
            imports, readies, floors = [], [], []
            for _ in range(args.rounds):
                started = time.monotonic()
                done = site.cli("import", str(package))
                imports.append(time.monotonic() - started)
                wait(lambda: site.status(f"{name}-1") == "Ready", 300, "the import to be Ready")
                readies.append(time.monotonic() - started)
                moved = next((line for line in done.stderr.splitlines() if " MB sent" in line), "")
                declared = base64.b64decode(
                    engine.configs.get(f"{name}-1").attrs["Spec"]["Data"])
                site.remove(name)
                # The floor: the same version declared by hand, its model
                # file and image here already.
                engine.configs.create(name=f"{name}-model-1", data=artifact("sklearn"),
                                      labels={**labels, L.ARTIFACT_OF: name})
                started = time.monotonic()
                engine.configs.create(name=f"{name}-1", data=declared,
                                      labels={**labels, L.MODEL: name})
                wait(lambda: site.status(f"{name}-1") == "Ready", 300, "the floor to be Ready")
                floors.append(time.monotonic() - started)
                site.remove(name)
            print(f"package: {package.stat().st_size:,} bytes; last import: "
                  f"{moved.partition(': ')[2]}")
            for what, values in (("import (the CLI's wall time)", imports),
                                 ("import to Ready", readies),
                                 ("declared by hand to Ready (the floor)", floors)):
                print(f"{what}: median {statistics.median(values):.2f} s, "
                      f"range {min(values):.2f}-{max(values):.2f} s "
                      f"({', '.join(f'{v:.2f}' for v in values)})")
        finally:
            subprocess.run([sys.executable, "-m", "aiart.cli", "trust", "rm", key],
                           env=site.env, capture_output=True, timeout=60)
            site.remove(name)
            remove_run(engine, run, [name])


if __name__ == "__main__":
    main()
