"""Batch jobs (aiart_runtime/batch.py) against a real S3 server (moto's):
CSV, JSON lines and Parquet read from the model's bucket, scored in chunks
as the API scores them, written back with a manifest; a job killed with
SIGKILL mid-way resumes from its last finished chunk and ends with the
output of direct scoring."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiart_runtime.__main__ import load
from aiart_runtime.batch import BatchError, MinioBucket, read_outputs, run
from aiart_runtime.settings import BatchJob
from moto.server import ThreadedMotoServer

from tests.integration.test_object_store import free_port
from tests.runtime.test_grpc import model_dir

BUCKET = "aiart-iris"
COLUMNS = ["sl", "sw", "pl", "pw"]


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                          aws_access_key_id="test", aws_secret_access_key="test-secret",
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3: str) -> MinioBucket:
    return MinioBucket(endpoint=s3, secure=False, bucket=BUCKET, access_key="test",
                       secret_key="test-secret")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_dir(tmp_path_factory.mktemp("model"))


def rows(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5],
                                               size=(count, 4)).round(2)


def csv_of(matrix: np.ndarray) -> bytes:
    lines = [",".join(COLUMNS)] + [",".join(str(v) for v in row) for row in matrix]
    return ("\n".join(lines) + "\n").encode()


def test_csv_json_lines_and_parquet_are_scored_as_the_api_scores_them(
        bucket: MinioBucket, model_folder: Path) -> None:
    model = load(model_folder)
    a, b, c = rows(250, 1), rows(40, 2), rows(30, 3)
    bucket.put("inputs/mixed/a.csv", csv_of(a), "text/csv")
    bucket.put("inputs/mixed/b.jsonl", b"\n".join(
        json.dumps(dict(zip(COLUMNS, r.tolist(), strict=True))).encode() for r in b[:20])
        + b"\n" + b"\n".join(json.dumps(r.tolist()).encode() for r in b[20:]), "x")
    parquet = io.BytesIO()
    pq.write_table(pa.table({name: c[:, i] for i, name in enumerate(COLUMNS)}), parquet)
    bucket.put("inputs/mixed/c.parquet", parquet.getvalue(), "x")
    bucket.put("inputs/mixed/notes.txt", b"not an input", "text/plain")
    job = BatchJob(id="j-mixed", inputs="inputs/mixed/", chunk_rows=100, model_digest="sha256:abc")
    manifest = run(model, bucket, job)
    assert manifest["rows"] == 320 and manifest["modelDigest"] == "sha256:abc"
    assert [i["key"] for i in manifest["inputs"]] == [
        "inputs/mixed/a.csv", "inputs/mixed/b.jsonl", "inputs/mixed/c.parquet"]
    assert manifest["inputs"][0]["columns"] == COLUMNS
    assert [o["rows"] for o in manifest["outputs"]] == [100, 100, 50, 40, 30]
    scored = list(read_outputs(bucket, job))
    everything = np.vstack([a, b, c])
    assert [r["outputs"]["predict"] for r in scored] == model.estimator.predict(
        everything).tolist()  # type: ignore[attr-defined]
    np.testing.assert_allclose([r["outputs"]["predict_proba"] for r in scored],
                               model.estimator.predict_proba(everything),  # type: ignore[attr-defined]
                               rtol=1e-12)
    assert scored[250] == {"input": "inputs/mixed/b.jsonl", "index": 0,
                           "outputs": scored[250]["outputs"]}
    progress = json.loads(bucket.get("jobs/j-mixed/progress.json"))
    assert progress == {"rowsDone": 320, "rowsKnown": 320, "files": 3}


def test_what_a_job_cannot_read_is_said(bucket: MinioBucket, model_folder: Path) -> None:
    model = load(model_folder)
    with pytest.raises(BatchError, match="no input under"):
        run(model, bucket, BatchJob(id="j-none", inputs="inputs/nothing/"))
    bucket.put("inputs/bad/x.csv", b"sl,sw,pl,pw\n1,2,3,oops\n", "text/csv")
    with pytest.raises(BatchError, match=r"x\.csv: could not convert string to float"):
        run(model, bucket, BatchJob(id="j-bad", inputs="inputs/bad/"))
    bucket.put("inputs/narrow/x.csv", b"1,2\n3,4\n", "text/csv")
    with pytest.raises(BatchError, match="the model refused rows 0-1"):
        run(model, bucket, BatchJob(id="j-narrow", inputs="inputs/narrow/"))


def test_a_job_killed_mid_way_resumes_from_its_last_finished_chunk(
        s3: str, bucket: MinioBucket, model_folder: Path, tmp_path: Path) -> None:
    many = rows(100_000, 9)
    bucket.put("inputs/big/rows.csv", csv_of(many), "text/csv")
    (tmp_path / "access").write_text("test")
    (tmp_path / "secret").write_text("test-secret")
    env = {**os.environ, "AIART_BATCH_JOB": json.dumps(
        {"id": "j-big", "inputs": "inputs/big/", "chunkRows": 2000}),
        "AIART_STORE_ENDPOINT": s3, "AIART_STORE_BUCKET": BUCKET,
        "AIART_STORE_ACCESS_KEY_FILE": str(tmp_path / "access"),
        "AIART_STORE_SECRET_KEY_FILE": str(tmp_path / "secret")}
    command = [sys.executable, "-m", "aiart_runtime", "batch", str(model_folder)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(bucket.list("jobs/j-big/chunks/")) < 5:
        assert first.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "no chunk was finished"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = {k: bucket.client.stat_object(BUCKET, k).etag
              for k in bucket.list("jobs/j-big/chunks/")}
    assert 5 <= len(before) < 50 and not bucket.list("jobs/j-big/manifest.json")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads(bucket.get("jobs/j-big/manifest.json"))
    assert manifest["rows"] == 100_000 and manifest["resumedChunks"] == len(before)
    # What was finished before the kill was not scored or written again (each
    # record holds the time it was written: written again, it would differ).
    assert {k: bucket.client.stat_object(BUCKET, k).etag for k in before} == before
    scored = [r["outputs"]["predict"] for r in read_outputs(bucket, BatchJob(id="j-big",
                                                                        inputs=""))]
    model = load(model_folder)
    assert scored == model.estimator.predict(many).tolist()  # type: ignore[attr-defined]
