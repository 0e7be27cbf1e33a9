"""Import-to-Ready of a model package on the running stack (./hack/up.sh
first), with its base cached: the runtime's layers in the registry and on
the node, as on a site that runs models of that runtime already.

One model of the runtime is served throughout (the site's base). Round
after round, a new model (an iris model of its own: its own pickled file,
so its own image layer) is declared, served and exported with ``aiart
export`` (signed with a key made for the run, trusted for the run); then
removed, its image deleted from the node, and imported with ``aiart
import`` (the CLI, as a site's admin runs it), timed from the command's
start to the command's end and to the version's status Ready. So the node
pulls the model's own layer, as a site that never ran this model does; the
registry keeps it from the serving (it cannot delete a layer), which spares
the import a few kilobytes. Beside it, in the same round, the floor under
it: the same version declared again by hand (its config created once more,
its image deleted from the node again, nothing imported), timed from the
config's creation to Ready.

The multi-node figure (two swarms that share nothing) is the chaos
scenario's: tests/chaos/test_packages.py.

Run: .venv/bin/python bench/package_import.py [--rounds 5]
Everything it creates is labelled aiart.bench or removed by name at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import pickle
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
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


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


def own_artifact(round_: int) -> bytes:
    """An iris model no other round has: another regularisation, so another
    pickle, so an image layer of its own."""
    x, y = load_iris(return_X_y=True)
    return pickle.dumps(LogisticRegression(C=1.0 + round_ / 100, max_iter=300).fit(x, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    engine = docker.from_env()
    run = uuid.uuid4().hex[:6]
    base = f"b{run}-base"
    names = [base, *(f"b{run}-pkg{i}" for i in range(args.rounds))]
    labels = {"aiart.bench": run}

    def declare(name: str, data: bytes, manifest: bytes | None = None) -> float:
        """The model file and the version's config; when the config was made."""
        engine.configs.create(name=f"{name}-model-1", data=data,
                              labels={**labels, L.ARTIFACT_OF: name})
        manifest = manifest or (
            f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, "
            f"version: '1'}}\nspec:\n  runtime: sklearn\n  artifact: "
            f"{{uri: 'config://{name}-model-1'}}\n").encode()
        started = time.monotonic()
        engine.configs.create(name=f"{name}-1", data=manifest, labels={**labels, L.MODEL: name})
        return started

    def until_ready(name: str, timeout: float, what: str) -> None:
        wait(lambda: site.status(f"{name}-1") == "Ready", timeout, what)

    def image_of(name: str) -> str:
        service = engine.services.list(filters={"label": f"{L.MODEL}={name}"})[0]
        return str(service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])

    def forget(image: str) -> None:
        """The image off the node, so that the next start pulls what the
        runtime's layers lack."""
        wait(lambda: not engine.api.containers(all=True, filters={"ancestor": image}),
             60, "the model's container to go")
        engine.images.remove(image, force=True)

    with tempfile.TemporaryDirectory() as folder:
        site = Site(engine, Path(folder))
        key = f"bench-{run}"
        try:
            declare(base, artifact("sklearn"))
            until_ready(base, 600, "the base model to be Ready")
            site.cli("packages", "key", "create", key)
            site.cli("trust", "add", key, str(Path(folder) / "aiart/signing" / f"{key}.pub"))
            imports, readies, floors = [], [], []
            for round_, name in enumerate(names[1:]):
                data = own_artifact(round_)
                declare(name, data)
                until_ready(name, 600, f"{name} to be Ready")
                package = Path(folder) / f"{name}.aiart"
                site.cli("export", name, "-o", str(package))
                image = image_of(name)
                declared = base64.b64decode(engine.configs.get(f"{name}-1").attrs["Spec"]["Data"])
                site.remove(name)
                forget(image)
                started = time.monotonic()
                done = site.cli("import", str(package))
                imports.append(time.monotonic() - started)
                until_ready(name, 300, "the import to be Ready")
                readies.append(time.monotonic() - started)
                moved = next((line for line in done.stderr.splitlines() if " MB sent" in line), "")
                site.remove(name)
                forget(image)
                # The floor: the same version declared by hand, its model
                # file made here, its image in the registry already.
                started = declare(name, data, declared)
                until_ready(name, 300, "the floor to be Ready")
                floors.append(time.monotonic() - started)
                site.remove(name)
                package.unlink()
            print(f"last import: {moved.partition(': ')[2]}")
            for what, values in (("import (the CLI's wall time)", imports),
                                 ("import to Ready", readies),
                                 ("declared by hand to Ready (the floor)", floors)):
                print(f"{what}: median {statistics.median(values):.2f} s, "
                      f"range {min(values):.2f}-{max(values):.2f} s "
                      f"({', '.join(f'{v:.2f}' for v in values)})")
        finally:
            subprocess.run([sys.executable, "-m", "aiart.cli", "trust", "rm", key],
                           env=site.env, capture_output=True, timeout=60)
            for name in names:
                site.remove(name)
            remove_run(engine, run, names)


if __name__ == "__main__":
    main()
