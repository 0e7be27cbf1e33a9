"""Model packages (operator/aiart/core/packages.py): an OCI image layout
holding a ModelPack model artifact, the image and an Ed25519 signature;
read back only when every blob matches its digest and a trusted key signed
the model. Tampering of every kind is refused with a reason."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from aiart.core import packages as P
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MANIFEST = b"apiVersion: aiart/v1\nkind: Model\nmetadata: {name: iris, version: '1'}\n" \
           b"spec:\n  runtime: sklearn\n  artifact: {uri: 'config://iris-1-model'}\n"


def image() -> P.Image:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layers = [b"layer one" * 100, b"layer two"]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": P.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": P.digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": P.digest(x), "size": len(x)} for x in layers]}).encode()
    return P.Image(manifest=manifest, media_type=P.OCI_MANIFEST,
                   blobs={P.digest(b): P.Blob.of(b) for b in (config, *layers)})


def raw(files: dict[str, P.Blob]) -> dict[str, bytes]:
    """A package's files as bytes, to change them as a forger would."""
    return {path: blob.read() for path, blob in files.items()}


def blobs(files: dict[str, bytes]) -> dict[str, P.Blob]:
    return {path: P.Blob.of(data) for path, data in files.items()}


def contents(**changes: object) -> P.Contents:
    base = {"name": "iris", "version": "1", "manifest": MANIFEST, "artifact_name": "model.pkl",
            "artifact": b"\x80pickle bytes", "run": {"metrics": {"accuracy": 0.97},
                                                     "params": {"C": 1.0}},
            "provenance": {"run": "run://iris/20261206-1", "scikit-learn": "1.5.2"},
            "image": image(), "created": "2026-12-06T12:00:00Z", "format": "sklearn-pickle"}
    return P.Contents(**{**base, **changes})  # type: ignore[arg-type]


KEY = Ed25519PrivateKey.generate()


def test_a_package_reads_back_as_it_was_made_and_says_who_signed_it() -> None:
    made = contents()
    files = P.from_tar(P.to_tar(P.build(made, KEY)))
    opened = P.open_package(files, [KEY.public_key()])
    assert opened.contents == made
    assert opened.signer == P.key_id(KEY.public_key())
    # The same package, the same bytes (a repeated export changes nothing).
    assert P.to_tar(P.build(made, KEY)) == P.to_tar(P.build(made, KEY))


def test_it_is_an_oci_image_layout_with_a_modelpack_model() -> None:
    files = raw(P.build(contents(), KEY))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    names = {m["annotations"][P.REF_NAME]: m for m in index["manifests"]}
    assert set(names) == {"iris:1", "iris:1-image", "iris:1-signature"}
    for path, data in files.items():
        if path.startswith("blobs/"):
            assert path == f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"
    model = json.loads(files[f"blobs/sha256/{names['iris:1']['digest'][7:]}"])
    assert model["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert model["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    assert [(layer["mediaType"], layer["annotations"]["org.cncf.model.filepath"])
            for layer in model["layers"]] == [
        ("application/vnd.cncf.model.weight.v1.raw", "model.pkl"),
        ("application/vnd.cncf.model.weight.config.v1.raw", "aiart.yaml"),
        ("application/vnd.cncf.model.doc.v1.raw", "run.json")]
    config = json.loads(files[f"blobs/sha256/{model['config']['digest'][7:]}"])
    assert config["descriptor"]["name"] == "iris" and config["modelfs"]["type"] == "layers"
    assert config["modelfs"]["diff_ids"] == [layer["digest"] for layer in model["layers"]]
    # The image's manifest is kept byte for byte: its digest is the image's.
    assert names["iris:1-image"]["digest"] == P.digest(image().manifest)
    signature = json.loads(files[f"blobs/sha256/{names['iris:1-signature']['digest'][7:]}"])
    assert signature["subject"]["digest"] == names["iris:1"]["digest"]


def blob_path(files: dict[str, bytes], data: bytes) -> str:
    return f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"


def test_a_changed_byte_anywhere_is_refused() -> None:
    made = contents()
    for part in (made.artifact, MANIFEST, next(iter(image().blobs.values())).read(),
                 image().manifest):
        assert part is not None
        files = raw(P.build(made, KEY))
        path = blob_path(files, part)
        files[path] = bytes([part[0] ^ 1]) + part[1:]
        with pytest.raises(P.PackageError, match="does not match its digest"):
            P.open_package(blobs(files), [KEY.public_key()])


def test_an_image_layer_the_package_does_not_carry_is_refused() -> None:
    # What an import links from another model's repository (the registry's
    # mount) is only ever a layer the package carries: one it names but
    # lacks, to borrow another model's layer by its digest, is refused.
    files = raw(P.build(contents(), KEY))
    layer = next(iter(image().blobs.values())).read()
    del files[blob_path(files, layer)]
    with pytest.raises(P.PackageError, match="the package lacks the blob"):
        P.open_package(blobs(files), [KEY.public_key()])


def test_a_manifest_changed_with_its_digests_redone_is_refused() -> None:
    # A careful forger: a new aiart.yaml under its own digest, the model's
    # manifest and the index rewritten to name it. The signature no longer
    # covers the model's manifest.
    files = raw(P.build(contents(), KEY))
    index = json.loads(files["index.json"])
    entry = next(m for m in index["manifests"] if m.get("artifactType") == P.MODEL_ARTIFACT)
    model = json.loads(files.pop(f"blobs/sha256/{entry['digest'][7:]}"))
    forged = MANIFEST.replace(b"sklearn", b"python")
    files[blob_path(files, forged)] = forged
    model["layers"][1].update(digest=P.digest(forged), size=len(forged))
    manifest = json.dumps(model).encode()
    files[blob_path(files, manifest)] = manifest
    entry.update(digest=P.digest(manifest), size=len(manifest))
    files["index.json"] = json.dumps(index).encode()
    with pytest.raises(P.PackageError, match="another model manifest"):
        P.open_package(blobs(files), [KEY.public_key()])


def test_a_package_signed_again_by_another_key_or_not_at_all() -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(P.PackageError, match="does not trust"):
        P.open_package(P.build(contents(), stranger), [KEY.public_key()])
    unsigned = P.build(contents(), None)
    with pytest.raises(P.PackageError, match="not signed"):
        P.open_package(unsigned, [KEY.public_key()])
    allowed = P.open_package(unsigned, [], allow_unsigned=True)
    assert allowed.signer == "" and allowed.contents == contents()
    # A signature that does not verify is never taken for "unsigned".
    files = raw(P.build(contents(), KEY))
    other = raw(P.build(contents(), stranger))
    index = json.loads(files["index.json"])
    signed = next(m for m in index["manifests"] if m.get("artifactType") == P.SIGNATURE_ARTIFACT)
    manifest = json.loads(files[f"blobs/sha256/{signed['digest'][7:]}"])
    stolen = next(v for k, v in other.items() if k.startswith("blobs/") and b'"subject"' in v)
    manifest["layers"][0]["annotations"][P.SIGNATURE_ANNOTATION] = json.loads(stolen)[
        "layers"][0]["annotations"][P.SIGNATURE_ANNOTATION]
    data = json.dumps(manifest).encode()
    files[blob_path(files, data)] = data
    signed.update(digest=P.digest(data), size=len(data))
    files["index.json"] = json.dumps(index).encode()
    with pytest.raises(P.PackageError, match="does not verify"):
        P.open_package(blobs(files), [KEY.public_key()], allow_unsigned=True)


def test_a_model_without_an_image_or_a_run_packs_too() -> None:
    made = contents(image=None, run=None, artifact=None, artifact_name="")
    opened = P.open_package(P.build(made, KEY), [KEY.public_key()])
    assert opened.contents == made


@pytest.mark.parametrize("member", ["link", "outside", "stray"])
def test_an_archive_with_more_than_a_layout_is_refused(member: str) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo({"link": "blobs/sha256/" + "0" * 64, "outside": "../etc/x",
                                "stray": "notes.txt"}[member])
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(P.PackageError):
        P.from_tar(out.getvalue())
    with pytest.raises(P.PackageError, match="not a package"):
        P.from_tar(b"not a tar archive at all" * 30)


def test_signing_keys_round_trip_through_pem_and_others_are_refused() -> None:
    private, public, made_id = P.new_signing_key()
    key, trusted = P.load_private_key(private), P.load_public_key(public)
    assert P.key_id(trusted) == made_id == P.key_id(key.public_key())
    assert P.open_package(P.build(contents(), key), [trusted]).signer == made_id
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )
    other = generate_private_key(SECP256R1())
    with pytest.raises(P.PackageError, match="not an Ed25519"):
        P.load_private_key(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                               NoEncryption()))
    with pytest.raises(P.PackageError, match="not an Ed25519"):
        P.load_public_key(other.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    for loader in (P.load_private_key, P.load_public_key):
        with pytest.raises(P.PackageError, match="PEM"):
            loader(b"-----BEGIN NOTHING-----\n")  # type: ignore[operator]


def test_the_importing_site_keeps_who_signed_it_and_what_it_was_built_from() -> None:
    made = contents(provenance={
        "image": "localhost:5000/aiart/iris@sha256:" + "a" * 64, "runtime": "sklearn",
        "sourceRun": "run://iris/20261206-1", "artifactSha256": "b" * 64,
        "imageLabels": {"aiart.runtime.libraries": "scikit-learn==1.5.2 numpy>=2,<3 joblib"}})
    opened = P.open_package(P.from_tar(P.to_tar(P.build(made, KEY))), [KEY.public_key()])
    kept = P.origin(opened, key_name="site-a", imported_at="2026-12-06T13:00:00Z")
    assert kept["signer"] == P.key_id(KEY.public_key()) and kept["keyName"] == "site-a"
    assert kept["libraries"] == "scikit-learn==1.5.2 numpy>=2,<3 joblib"
    assert kept["sourceRun"] == "run://iris/20261206-1"
    assert kept["image"].endswith("a" * 64) and kept["declaredAt"] == made.created
    assert P.read_origin(json.dumps(kept)) == kept
    # A label that is not one (written by hand): nothing shown.
    for label in ("", "not json", "[1]", '{"signer": 1}'):
        assert P.read_origin(label) is None


def test_an_imported_version_runs_the_image_its_package_carried() -> None:
    made = contents(provenance={"imageTag": "registry.a:5000/aiart/iris:1-3f2a9c"})
    opened = P.open_package(P.from_tar(P.to_tar(P.build(made, KEY))), [KEY.public_key()])
    kept = P.origin(opened, key_name="", imported_at="2026-12-06T13:00:00Z")
    assert made.image is not None
    assert P.imported_image(json.dumps(kept)) == ("1-3f2a9c", P.digest(made.image.manifest))
    # No image in the package, or a label whose tag or digest is not one
    # (written by hand): nothing pinned, the version is built as any other.
    bare = P.open_package(P.from_tar(P.to_tar(P.build(contents(image=None), KEY))),
                          [KEY.public_key()])
    assert P.imported_image(json.dumps(P.origin(bare, key_name="", imported_at=""))) is None
    for tag, pinned in (("1-3f2a9c", "sha256:" + "A" * 64), ("../other:1", kept["imageDigest"]),
                        ("", kept["imageDigest"]), ("1-3f2a9c", "latest")):
        assert P.imported_image(json.dumps({**kept, "imageTag": tag,
                                            "imageDigest": pinned})) is None
    assert P.imported_image("") is None
    # The tag the image was built as: a registry's port is not a tag.
    for built_as, tag in (("registry.a:5000/aiart/iris:1-3f", "1-3f"), ("registry.a:5000/x", ""),
                          ("", ""), ("iris:bad/tag", "")):
        assert P.image_tag(contents(provenance={"imageTag": built_as})) == tag


def test_a_package_is_read_where_it_lies_and_one_cut_short_is_refused(tmp_path: Path) -> None:
    made = contents()
    path = tmp_path / "iris-1.aiart"
    with path.open("wb") as out:
        P.write_tar(P.build(made, KEY), out)
    assert path.read_bytes() == P.to_tar(P.build(made, KEY))
    with path.open("rb") as package:
        opened = P.open_package(P.read_tar(package), [KEY.public_key()])
        assert opened.contents == made
        # The image's layers stay in the file, read when wanted.
        assert opened.contents.image is not None
        for wanted, blob in opened.contents.image.blobs.items():
            assert P.digest(blob.read()) == wanted
    whole = path.read_bytes()
    cut = tmp_path / "cut.aiart"
    cut.write_bytes(whole[:len(whole) // 2])
    with cut.open("rb") as package, pytest.raises(P.PackageError):
        P.open_package(P.read_tar(package), [KEY.public_key()])
    with pytest.raises(P.PackageError, match="not a package"):
        P.read_tar(io.BytesIO(gzip.compress(whole)))
