"""Artifact URIs, bucket layout and run records: what may and may not pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiart.core.spec import ManifestError, parse_manifest
from aiart.core.store_layout import (
    RUN_ID,
    BadURI,
    ConfigRef,
    RunRecord,
    RunRef,
    S3Ref,
    bucket_for,
    new_run_id,
    parse_artifact_uri,
    run_file_key,
)


@pytest.mark.parametrize(("uri", "ref"), [
    ("config://iris-model-1", ConfigRef("iris-model-1")),
    ("s3://datasets/iris/model.pkl", S3Ref("datasets", "iris/model.pkl")),
    ("run://iris/20260101T120000Z-0a1b2c3d", RunRef("iris", "20260101T120000Z-0a1b2c3d")),
])
def test_good_uris(uri: str, ref: object) -> None:
    assert parse_artifact_uri(uri) == ref


@pytest.mark.parametrize(("uri", "message"), [
    ("model.pkl", "is not a URI"),
    ("http://host/model.pkl", "scheme 'http' is not supported"),
    ("s3://Bad_Bucket/key", "not a valid S3 bucket name"),
    ("s3://b/key", "not a valid S3 bucket name"),
    ("s3://bucket/", "1 to 1024 characters"),
    ("s3://bucket/../etc/passwd", "without '.', '..' or '//'"),
    ("s3://bucket/a//b", "without '.', '..' or '//'"),
    ("s3://bucket//abs", "without '.', '..' or '//'"),
    ("s3://bucket/a\nb", "control characters"),
    ("run://iris/latest", "not a run id"),
    ("run://Iris/20260101T120000Z-0a1b2c3d", "not a model name"),
    ("config://../x", "not a valid Docker config name"),
])
def test_bad_uris_say_why(uri: str, message: str) -> None:
    with pytest.raises(BadURI) as caught:
        parse_artifact_uri(uri)
    assert message in str(caught.value)


def test_manifest_reports_a_bad_uri_at_its_field() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(b"apiVersion: aiart/v1\nkind: Model\nmetadata: {name: m, version: '1'}\n"
                       b"spec: {runtime: sklearn, artifact: {uri: 's3://bucket/../x'}}\n")
    assert caught.value.problems[0].startswith("spec.artifact.uri: object key")


def test_manifest_store_options_default_to_keeping_everything() -> None:
    m = parse_manifest(b"apiVersion: aiart/v1\nkind: Model\nmetadata: {name: m, version: '1'}\n"
                       b"spec: {runtime: sklearn, artifact: {uri: 'run://m/20260101T120000Z-"
                       b"0a1b2c3d'}}\n")
    assert not m.spec.store.credentials and not m.spec.store.deleteWithModel
    assert bucket_for("m") == "aiart-m"


def test_run_ids_sort_by_time_and_do_not_collide() -> None:
    early = new_run_id(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_run_id(datetime(2026, 1, 2, tzinfo=UTC))
    assert RUN_ID.match(early) and early < late
    assert len({new_run_id() for _ in range(100)}) == 100


@pytest.mark.parametrize("name", ["../x", "a/../../b", ".", "a/./b", "a b", ""])
def test_run_files_cannot_leave_their_folder(name: str) -> None:
    with pytest.raises(BadURI):
        run_file_key("20260101T120000Z-0a1b2c3d", name)


def test_run_record_round_trips_and_rejects_a_path_as_model_file() -> None:
    record = RunRecord(run_id="20260101T120000Z-0a1b2c3d", model="iris", model_file="model.pkl",
                       sha256="0" * 64, size=3, created="2026-01-01T00:00:00+00:00",
                       files=("plots/roc.png",), has_metrics=True)
    assert RunRecord.from_json(record.to_json()) == record
    forged = record.to_json().replace(b'"model.pkl"', b'"../../x"')
    with pytest.raises(BadURI, match="not a file name"):
        RunRecord.from_json(forged)
    with pytest.raises(BadURI, match="not a run record"):
        RunRecord.from_json(b"[]")
