"""What writing and reading a model package costs, by the size of its
image, without a stack: a package with one image layer of random bytes
(which does not compress, as a real layer barely does) written to a file
as ``aiart export`` writes one, then read back and checked as ``aiart
import`` reads one (every blob's digest, the signature); wall time of
each, and the process's peak resident memory, which stays flat: the
layer is read a chunk at a time from where it lies.

    .venv/bin/python bench/package_io.py [--megabytes 300 1000]

Each size runs in a process of its own, so that each peak is its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from aiart.core import packages as P
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MANIFEST = (b"apiVersion: aiart/v1\nkind: Model\nmetadata: {name: iris, version: '1'}\n"
            b"spec:\n  runtime: sklearn\n  artifact: {uri: 'config://iris-1-model'}\n")


def one(megabytes: int) -> None:
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        layer_path = os.path.join(folder, "layer")
        hashed = hashlib.sha256()
        with open(layer_path, "wb") as out:
            for _ in range(megabytes):
                part = os.urandom(1 << 20)
                hashed.update(part)
                out.write(part)
        size = megabytes << 20
        config = b'{"architecture":"amd64","os":"linux"}'
        layer_digest = f"sha256:{hashed.hexdigest()}"
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": P.OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": P.digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer_digest, "size": size}]}).encode()
        package_path = os.path.join(folder, "package.aiart")
        with open(layer_path, "rb") as layer:
            image = P.Image(manifest=manifest, media_type=P.OCI_MANIFEST, blobs={
                P.digest(config): P.Blob.of(config),
                layer_digest: P.Blob.in_file(layer, 0, size)})
            contents = P.Contents(name="iris", version="1", manifest=MANIFEST,
                                  artifact_name="model.pkl", artifact=b"\x80model",
                                  image=image, provenance={"imageTag": "r/aiart/iris:1-x"})
            started = time.perf_counter()
            with open(package_path, "wb") as out:
                P.write_tar(P.build(contents, key), out)
            written = time.perf_counter() - started
        started = time.perf_counter()
        with open(package_path, "rb") as package:
            opened = P.open_package(P.read_tar(package), [key.public_key()])
        read = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert opened.contents.image is not None
        print(f"| {megabytes:,} MB | {os.path.getsize(package_path):,} | {written:.2f} s | "
              f"{read:.2f} s | "
              f"{peak:.0f} MB |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one)
        return
    print("| image layer | package bytes | write (export) | read and check (import) | "
          "peak memory |\n|---|---|---|---|---|", flush=True)
    for megabytes in args.megabytes:
        subprocess.run([sys.executable, __file__, "--one", str(megabytes)], check=True)


if __name__ == "__main__":
    main()
