"""Model packages: one model version with everything it needs to run on
another site (the manifest, the model file, the run it came from, the built
image) in one signed file, as an OCI image layout in a tar archive, so that
``oras``, ``skopeo`` or a registry can hold and move what is in it
(docs/packages.md maps it out).

Pure: no I/O of its own. Small files (manifests, the model file, the run)
come and go as bytes; an image's layers as ``Blob``s, read a chunk at a
time from where they are (a package's tar member, a download), so that an
image of gigabytes never has to fit in memory: transfer/packages.py opens
the files and the registry, and writes the tar archive as it is made.

    oci-layout                 {"imageLayoutVersion": "1.0.0"}
    index.json                 the package's manifests, by reference name
    blobs/sha256/<hex>         every manifest, config and layer, by digest

The index names three manifests:

- ``<model>:<version>``: the model, a CNCF ModelPack artifact
  (``application/vnd.cncf.model.manifest.v1+json``): its config the
  ModelPack model config, its layers the model file (a weight), aiart's
  manifest (the weights' config) and the run's metrics and parameters (a
  doc), each with its file name (``org.cncf.model.filepath``); its
  annotations the image's manifest digest and the provenance.
- ``<model>:<version>-image``: the image aiart built, its OCI manifest,
  config and layers as the registry holds them, so its digest is the same
  wherever it is pushed.
- ``<model>:<version>-signature``: an artifact whose subject is the model's
  manifest, holding a statement (the model's manifest digest and the
  image's) and its Ed25519 signature.

Every blob is checked against its digest when the package is read, and the
signature covers the model's manifest, which names every other blob by its
digest: a changed byte anywhere is found.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aiart.core import labels as L

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
# The CNCF ModelPack specification's (model-spec, specs-go/v1).
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
MODEL_WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
MODEL_DOC = "application/vnd.cncf.model.doc.v1.raw"
FILEPATH = "org.cncf.model.filepath"
# aiart's own.
SIGNATURE_ARTIFACT = "application/vnd.aiart.package.signature.v1+json"
STATEMENT = "application/vnd.aiart.package.statement.v1+json"
IMAGE_ANNOTATION = "ai.aiart.image.manifest"
IMAGE_TYPE_ANNOTATION = "ai.aiart.image.media-type"
PROVENANCE_ANNOTATION = "ai.aiart.provenance"
SIGNATURE_ANNOTATION = "ai.aiart.signature.ed25519"
KEY_ANNOTATION = "ai.aiart.signature.key-id"
MANIFEST_FILE = "aiart.yaml"
RUN_FILE = "run.json"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
BLOB_PATH = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")


class PackageError(ValueError):
    """The package cannot be made, read or trusted; the message says why."""


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# How much of a blob is read at a time.
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, eq=False)
class Blob:
    """A blob's bytes where they are: in memory, or a stretch of an open
    file read a chunk at a time whenever they are wanted (``chunks`` reads
    them afresh on each call). Two blobs are equal when their bytes are."""

    size: int
    chunks: Callable[[], Iterator[bytes]]

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(len(data), lambda: iter((data,) if data else ()))

    @classmethod
    def in_file(cls, file: IO[bytes], offset: int, size: int) -> Blob:
        """``size`` bytes of ``file`` from ``offset``: the file is read
        where it is, and may be shared (each chunk is sought for)."""
        def chunks() -> Iterator[bytes]:
            done = 0
            while done < size:
                file.seek(offset + done)
                part = file.read(min(CHUNK, size - done))
                if not part:
                    raise PackageError("the package ends before its blob does: it is cut short")
                done += len(part)
                yield part
        return cls(size, chunks)

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def digest(self) -> str:
        hashed = hashlib.sha256()
        for part in self.chunks():
            hashed.update(part)
        return f"sha256:{hashed.hexdigest()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blob) and self.size == other.size and \
            self.digest() == other.digest()

    __hash__ = None  # type: ignore[assignment]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, **annotations: str) -> dict[str, Any]:
    found: dict[str, Any] = {"mediaType": media_type, "digest": digest(data),
                             "size": len(data)}
    if annotations:
        found["annotations"] = dict(annotations)
    return found


def key_id(public: Ed25519PublicKey) -> str:
    """A public key's id: the first 16 hex digits of its raw bytes' SHA-256."""
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """A built image as its registry holds it: the manifest's bytes as they
    are (its digest is the image's), and the config and layers it names."""

    manifest: bytes
    media_type: str
    blobs: Mapping[str, Blob]  # digest -> its bytes

    def descriptors(self) -> list[dict[str, Any]]:
        parsed = json.loads(self.manifest)
        return [parsed["config"], *parsed.get("layers", [])]


@dataclass(frozen=True, slots=True, kw_only=True)
class Contents:
    """What a package carries of one model version."""

    name: str
    version: str
    manifest: bytes  # aiart's manifest, YAML as declared
    artifact_name: str = ""
    artifact: bytes | None = None
    run: Mapping[str, Any] | None = None  # the source run's metrics and params
    provenance: Mapping[str, Any] = field(default_factory=dict)
    image: Image | None = None
    created: str = ""
    format: str = ""  # sklearn-pickle, onnx, h2o-mojo, python, image


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    """A package read and checked: its contents, and who signed it (the key
    id), or "" for an unsigned one that was allowed."""

    contents: Contents
    signer: str
    model_manifest: str  # its digest
    size: int


def build(contents: Contents, key: Ed25519PrivateKey | None) -> dict[str, Blob]:
    """The package's files (path -> bytes), signed with ``key`` (None: unsigned)."""
    if not contents.name or not contents.version:
        raise PackageError("a package needs the model's name and version")
    files: dict[str, Blob] = {"oci-layout": Blob.of(_canonical(OCI_LAYOUT))}

    def blob(data: bytes) -> None:
        files[f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"] = Blob.of(data)

    layers: list[dict[str, Any]] = []
    parts: list[tuple[str, bytes, str]] = [(MODEL_WEIGHT_CONFIG, contents.manifest, MANIFEST_FILE)]
    if contents.artifact is not None:
        parts.insert(0, (MODEL_WEIGHT, contents.artifact, contents.artifact_name or "model"))
    if contents.run is not None:
        parts.append((MODEL_DOC, _canonical(dict(contents.run)), RUN_FILE))
    for media_type, data, name in parts:
        blob(data)
        layers.append(_descriptor(media_type, data, **{FILEPATH: name}))
    config = _canonical({
        "descriptor": {"name": contents.name, "version": contents.version,
                       **({"createdAt": contents.created} if contents.created else {})},
        "config": {"format": contents.format} if contents.format else {},
        "modelfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]},
    })
    blob(config)
    annotations = {PROVENANCE_ANNOTATION: json.dumps(dict(contents.provenance),
                                                     sort_keys=True)}
    if contents.created:
        annotations[CREATED] = contents.created
    manifests: list[dict[str, Any]] = []
    if contents.image is not None:
        image = contents.image
        for descriptor in image.descriptors():
            wanted = str(descriptor["digest"])
            part = image.blobs.get(wanted)
            # Its digest was checked as it was read from the registry; its
            # size is checked here (reading a layer again costs its size).
            if part is None or not DIGEST.match(wanted) or part.size != descriptor["size"]:
                raise PackageError(f"the image's blob {wanted} is missing or not the size "
                                   "its manifest says")
            files[f"blobs/sha256/{wanted.removeprefix('sha256:')}"] = part
        blob(image.manifest)
        annotations[IMAGE_ANNOTATION] = digest(image.manifest)
        annotations[IMAGE_TYPE_ANNOTATION] = image.media_type
        manifests.append(_descriptor(image.media_type, image.manifest, **{
            REF_NAME: f"{contents.name}:{contents.version}-image"}))
    model = _canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": MODEL_ARTIFACT,
        "config": _descriptor(MODEL_CONFIG, config), "layers": layers,
        "annotations": annotations})
    blob(model)
    model_descriptor = _descriptor(OCI_MANIFEST, model)
    manifests.insert(0, {**model_descriptor, "artifactType": MODEL_ARTIFACT,
                         "annotations": {REF_NAME: f"{contents.name}:{contents.version}"}})
    if key is not None:
        statement = _canonical({"model": contents.name, "version": contents.version,
                                "manifest": model_descriptor["digest"],
                                "image": annotations.get(IMAGE_ANNOTATION, "")})
        signature = base64.b64encode(key.sign(statement)).decode()
        blob(statement)
        blob(b"{}")
        signed = _canonical({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGNATURE_ARTIFACT,
            "config": _descriptor(OCI_EMPTY, b"{}"),
            "layers": [_descriptor(STATEMENT, statement, **{
                SIGNATURE_ANNOTATION: signature, KEY_ANNOTATION: key_id(key.public_key())})],
            "subject": model_descriptor})
        blob(signed)
        manifests.append({**_descriptor(OCI_MANIFEST, signed), "artifactType": SIGNATURE_ARTIFACT,
                          "annotations": {
                              REF_NAME: f"{contents.name}:{contents.version}-signature"}})
    files["index.json"] = Blob.of(_canonical({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": manifests}))
    return files


class _Reader:
    """A blob as the file object tarfile copies from."""

    def __init__(self, blob: Blob) -> None:
        self._chunks = blob.chunks()
        self._buffer, self._at = b"", 0

    def read(self, size: int = -1) -> bytes:
        taken: list[bytes] = []
        while size != 0:
            if self._at >= len(self._buffer):
                part = next(self._chunks, None)
                if part is None:
                    break
                self._buffer, self._at = part, 0
            # Slicing copies what is taken only, not what is left.
            piece = self._buffer[self._at:] if size < 0 else \
                self._buffer[self._at:self._at + size]
            self._at += len(piece)
            size = size - len(piece) if size > 0 else size
            taken.append(piece)
        return b"".join(taken)


def write_tar(files: Mapping[str, Blob], out: IO[bytes]) -> None:
    """The files as one tar archive (``skopeo``'s and ``oras``' oci-archive),
    written to ``out`` a chunk at a time, in a fixed order and with fixed
    times: the same package, the same bytes."""
    with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                         copybufsize=CHUNK) as archive:
        for path in sorted(files, key=lambda p: (p != "oci-layout", p != "index.json", p)):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = files[path].size, 0o644, 0
            archive.addfile(info, _Reader(files[path]))


def to_tar(files: Mapping[str, Blob]) -> bytes:
    """``write_tar`` into memory."""
    out = io.BytesIO()
    write_tar(files, out)
    return out.getvalue()


def read_tar(package: IO[bytes]) -> dict[str, Blob]:
    """A package's files, each left where it is in ``package`` (a seekable
    file: an uncompressed tar archive); PackageError for anything that is not
    a package's (links, devices, paths outside it, a blob not named by its
    digest)."""
    files: dict[str, Blob] = {}
    try:
        with tarfile.open(fileobj=package, mode="r:") as archive:
            for member in archive:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise PackageError(f"{member.name}: a package holds plain files only")
                path = member.name.removeprefix("./")
                if path not in ("oci-layout", "index.json") and not BLOB_PATH.match(path):
                    raise PackageError(f"{member.name}: not a file of an OCI image layout")
                files[path] = Blob.in_file(package, member.offset_data, member.size)
    except tarfile.TarError as exc:
        raise PackageError(f"not a package (an uncompressed tar archive of an OCI image "
                           f"layout): {exc}") from None
    return files


def from_tar(data: bytes) -> dict[str, Blob]:
    """``read_tar`` of a package in memory."""
    return read_tar(io.BytesIO(data))


def _json(files: Mapping[str, Blob], path: str) -> Any:
    try:
        return json.loads(files[path].read())
    except KeyError:
        raise PackageError(f"the package has no {path}") from None
    except ValueError:
        raise PackageError(f"{path} is not JSON") from None


def _checked(files: Mapping[str, Blob], wanted: str) -> Blob:
    """The blob ``wanted`` names, read once through to check its digest."""
    if not isinstance(wanted, str) or not DIGEST.match(wanted):
        raise PackageError(f"{wanted!r} is not a sha256 digest")
    found = files.get(f"blobs/sha256/{wanted.removeprefix('sha256:')}")
    if found is None:
        raise PackageError(f"the package lacks the blob {wanted}")
    if found.digest() != wanted:
        raise PackageError(f"the blob {wanted} does not match its digest: the package was "
                           "changed or damaged")
    return found


def _blob(files: Mapping[str, Blob], wanted: str) -> bytes:
    """A small blob's bytes (a manifest, the model file), checked."""
    data = _checked(files, wanted).read()
    if digest(data) != wanted:  # read again: a file changed between the two reads
        raise PackageError(f"the blob {wanted} changed while it was read")
    return data


def open_package(files: Mapping[str, Blob], trusted: Iterable[Ed25519PublicKey], *,
                 allow_unsigned: bool = False) -> Opened:
    """The package's contents, once every blob matches its digest and the
    model's manifest is signed by a trusted key (or unsigned, where allowed).
    PackageError says what is wrong."""
    if _json(files, "oci-layout") != OCI_LAYOUT:
        raise PackageError("oci-layout is not an OCI image layout 1.0.0's")
    index = _json(files, "index.json")
    listed = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(listed, list):
        raise PackageError("index.json lists no manifests")
    models = [m for m in listed if isinstance(m, dict) and m.get("artifactType") == MODEL_ARTIFACT]
    if len(models) != 1:
        raise PackageError(f"a package holds one model; this one {len(models)}")
    model_digest = str(models[0].get("digest"))
    model = json.loads(_blob(files, model_digest))
    if model.get("artifactType") != MODEL_ARTIFACT:
        raise PackageError("the model's manifest is not a ModelPack model's")
    signer = _signer(files, listed, model_digest, model, list(trusted))
    if not signer and not allow_unsigned:
        raise PackageError("the package is not signed; an admin may allow unsigned imports "
                           "(--allow-unsigned)")
    annotations = model.get("annotations") or {}
    config = json.loads(_blob(files, model["config"]["digest"]))
    layers = {layer.get("annotations", {}).get(FILEPATH, ""): layer for layer in model["layers"]}
    if MANIFEST_FILE not in layers:
        raise PackageError(f"the package has no {MANIFEST_FILE} (aiart's manifest)")
    artifact_layer = next((layer for layer in model["layers"]
                           if layer.get("mediaType") == MODEL_WEIGHT), None)
    image = None
    if IMAGE_ANNOTATION in annotations:
        manifest = _blob(files, annotations[IMAGE_ANNOTATION])
        parsed = json.loads(manifest)
        descriptors = [parsed["config"], *parsed.get("layers", [])]
        image = Image(manifest=manifest, media_type=annotations.get(IMAGE_TYPE_ANNOTATION,
                                                                    OCI_MANIFEST),
                      blobs={d["digest"]: _checked(files, d["digest"]) for d in descriptors})
    run = json.loads(_blob(files, layers[RUN_FILE]["digest"])) if RUN_FILE in layers else None
    descriptor = config.get("descriptor") or {}
    contents = Contents(
        name=str(descriptor.get("name", "")), version=str(descriptor.get("version", "")),
        manifest=_blob(files, layers[MANIFEST_FILE]["digest"]),
        artifact_name=(artifact_layer or {}).get("annotations", {}).get(FILEPATH, ""),
        artifact=_blob(files, artifact_layer["digest"]) if artifact_layer else None,
        run=run, provenance=json.loads(annotations.get(PROVENANCE_ANNOTATION) or "{}"),
        image=image, created=str(descriptor.get("createdAt", "")),
        format=str((config.get("config") or {}).get("format", "")))
    return Opened(contents=contents, signer=signer, model_manifest=model_digest,
                  size=sum(v.size for v in files.values()))


def _signer(files: Mapping[str, Blob], listed: list[Any], model_digest: str,
            model: Mapping[str, Any], trusted: list[Ed25519PublicKey]) -> str:
    """The id of the trusted key whose signature covers the model's manifest
    and the image it names; "" when none is there. A signature that does not
    verify is an error, not "unsigned": the package was changed."""
    keys = {key_id(k): k for k in trusted}
    found = ""
    for entry in listed:
        if not isinstance(entry, dict) or entry.get("artifactType") != SIGNATURE_ARTIFACT:
            continue
        signed = json.loads(_blob(files, str(entry.get("digest"))))
        if (signed.get("subject") or {}).get("digest") != model_digest:
            raise PackageError("the package's signature is for another model manifest: the "
                               "package was changed")
        for layer in signed.get("layers", []):
            statement = _blob(files, layer["digest"])
            notes = layer.get("annotations") or {}
            said = json.loads(statement)
            image = (model.get("annotations") or {}).get(IMAGE_ANNOTATION, "")
            if said.get("manifest") != model_digest or said.get("image", "") != image:
                raise PackageError("the package's signed statement does not name its model "
                                   "and image: the package was changed")
            key = keys.get(str(notes.get(KEY_ANNOTATION, "")))
            if key is None:
                raise PackageError(f"the package is signed by key {notes.get(KEY_ANNOTATION)}, "
                                   "which this site does not trust (aiart trust add)")
            try:
                key.verify(base64.b64decode(str(notes.get(SIGNATURE_ANNOTATION, ""))), statement)
            except (InvalidSignature, ValueError):
                raise PackageError("the package's signature does not verify: the package was "
                                   "changed") from None
            found = key_id(key)
    return found


def new_signing_key() -> tuple[bytes, bytes, str]:
    """A new Ed25519 key pair: the private key (PKCS #8 PEM, unencrypted:
    keep it as a secret), the public key (PEM) and its id."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private, public, key_id(key.public_key())


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PackageError(f"not a signing key (an Ed25519 private key in PEM): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PackageError("the signing key is not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise PackageError(f"not a public key (an Ed25519 public key in PEM): {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PackageError("the public key is not an Ed25519 key")
    return key


# A registry tag (the distribution spec's grammar).
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def image_tag(contents: Contents) -> str:
    """The tag the package's image was built as on its site (``1-3f2a…``),
    which the import pushes it under; "" when it names none."""
    built_as = str(contents.provenance.get("imageTag", ""))
    repository, _, tag = built_as.rpartition(":")
    return tag if "/" not in tag and repository and _TAG.match(tag) else ""


def origin(opened: Opened, *, key_name: str, imported_at: str) -> dict[str, str]:
    """What the importing site keeps of a package it imported, as the
    version's label ``aiart.package`` (JSON; the API and the dashboard show
    it): who signed it (checked at the import), where and from what it was
    built, and the libraries its image runs the model with; and the image
    the version runs here (``imageTag``, ``imageDigest``: see
    ``imported_image``)."""
    contents = opened.contents
    provenance = contents.provenance
    image_labels = provenance.get("imageLabels")
    libraries = image_labels.get(L.RUNTIME_LIBRARIES, "") \
        if isinstance(image_labels, Mapping) else ""
    image = contents.image
    return {
        "signer": opened.signer, "keyName": key_name, "package": opened.model_manifest,
        "image": str(provenance.get("image", "")),
        "imageTag": image_tag(contents) if image is not None else "",
        "imageDigest": digest(image.manifest) if image is not None else "",
        "artifactSha256": str(provenance.get("artifactSha256", "")),
        "sourceRun": str(provenance.get("sourceRun", "")),
        "runtime": str(provenance.get("runtime", "")), "libraries": str(libraries),
        "declaredAt": contents.created, "importedAt": imported_at,
    }


def read_origin(label: str) -> dict[str, str] | None:
    """``origin`` back from its label; None when there is none or it is not
    one (a label anyone with the engine could have written by hand)."""
    try:
        found = json.loads(label) if label else None
    except ValueError:
        return None
    if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        return None
    return found


def imported_image(label: str) -> tuple[str, str] | None:
    """The tag and digest of the image a version imported from a package
    runs (its ``aiart.package`` label), in its model's own repository: the
    image the package carried, never one this site's aiart would build
    (another aiart version computes another tag). None: not imported with
    an image, or a label that is not one. A label written by hand names at
    most an image of the model's own repository, which its deployers can
    run anyway (``runtime: image``)."""
    found = read_origin(label)
    if found is None:
        return None
    tag, pinned = found.get("imageTag", ""), found.get("imageDigest", "")
    if not _TAG.match(tag) or not _DIGEST.match(pinned):
        return None
    return tag, pinned
