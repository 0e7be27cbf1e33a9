"""Which bridge serves an H2O MOJO faster: a JVM inside the Python server
(JPype), or a JVM in a separate process fed over a pipe?

Both score the same MOJO (tests/fixtures/iris-h2o-gbm.zip) with H2O's own
genmodel classes (EasyPredictModelWrapper), one row per call, as a server
would for a one-row request. Reports per-call latency (p50, p99) and calls
per second for each, and their ratio.

Run: ./bench/h2o_bridge.sh   (fetches h2o-genmodel.jar from the h2o wheel)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MOJO = ROOT / "tests" / "fixtures" / "iris-h2o-gbm.zip"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def summarise(name: str, times: list[float], labels: list[str]) -> tuple[str, float, float, float]:
    times.sort()
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99)]
    rate = len(times) / sum(times)
    print(f"{name:28} {rate:9.0f} calls/s  p50 {p50 * 1e6:7.1f} us  p99 {p99 * 1e6:7.1f} us  "
          f"labels {labels}")
    return name, rate, p50, p99


def time_calls(name: str, score: Any, calls: int) -> tuple[str, float, float, float]:
    """Warm up, then time ``calls`` one-row scorings."""
    labels = [score(r) for r in ROWS]
    for _ in range(500):
        score(ROWS[0])
    times = []
    for i in range(calls):
        start = time.perf_counter()
        score(ROWS[i % 3])
        times.append(time.perf_counter() - start)
    return summarise(name, times, labels)


def jpype_bridge(genmodel: Path, calls: int) -> tuple[str, float, float, float]:
    import jpype

    jpype.startJVM(classpath=[str(genmodel)])
    easy = jpype.JClass("hex.genmodel.easy.EasyPredictModelWrapper")
    mojo = jpype.JClass("hex.genmodel.MojoModel")
    row_data = jpype.JClass("hex.genmodel.easy.RowData")
    model = easy(mojo.load(str(MOJO)))
    names = [str(n) for n in model.m.getNames()][: len(ROWS[0])]

    def score(row: list[float]) -> str:
        data = row_data()
        for name, value in zip(names, row, strict=True):
            data.put(name, jpype.JDouble(value))
        prediction = model.predictMultinomial(data)
        _ = list(prediction.classProbabilities)
        return str(prediction.label)

    return time_calls("JVM inside Python (JPype)", score, calls)


def pipe_bridge(genmodel: Path, calls: int) -> tuple[str, float, float, float]:
    classes = Path(tempfile.mkdtemp(prefix="aiart-h2o-"))
    subprocess.run(["javac", "-cp", str(genmodel), "-d", str(classes),
                    str(ROOT / "bench" / "h2o" / "MojoPipeScorer.java")], check=True)
    proc = subprocess.Popen(
        ["java", "-cp", f"{genmodel}:{classes}", "MojoPipeScorer", str(MOJO)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdin and proc.stdout

    def score(row: list[float]) -> str:
        proc.stdin.write(",".join(map(str, row)) + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return proc.stdout.readline().split(",")[0]  # type: ignore[union-attr]

    try:
        return time_calls("JVM process over a pipe", score, calls)
    finally:
        proc.stdin.close()
        proc.wait(10)  # the process this script started, by its handle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--genmodel", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    pipe = pipe_bridge(args.genmodel, args.calls)
    inside = jpype_bridge(args.genmodel, args.calls)
    print(f"\nJPype / pipe: throughput {inside[1] / pipe[1]:.2f}x, "
          f"p50 {inside[2] / pipe[2]:.2f}x, p99 {inside[3] / pipe[3]:.2f}x")


if __name__ == "__main__":
    main()
