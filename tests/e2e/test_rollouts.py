"""Progressive delivery through the real Traefik and Prometheus, one model's
story: a canary promoted step by step with the traffic split as declared, a
canary whose gate fails rolled back, a shadow that sees traffic nobody gets
answers from, aborted with the CLI; the caller of the model's route never
sees a failed request. (One model for all three: each new version is one
deployment, not two.)"""

from __future__ import annotations

import time
from collections import Counter

import httpx

from tests.e2e.conftest import Models, wait_for
from tests.e2e.test_api_cli import cli, keys
from tests.e2e.test_model_lifecycle import ROWS, Hammer, infer_body
from tests.e2e.test_monitoring import value

# Prometheus scrapes every 5 s: a step reads two or three scrapes.
INTERVAL = "15s"


def share(versions: list[str], version: str) -> float:
    return 100 * Counter(versions)[version] / max(len(versions), 1)


def serving_under_traffic(models: Models, model: str, artifact: bytes) -> Hammer:
    """Version 1 ready, and a caller on the model's route from now on."""
    models.wait_status(models.declare(model, "1", artifact), "Ready", timeout=300)
    hammer = Hammer(model)
    hammer.start()
    return hammer


def rollout_begins(models: Models, model: str, version: str, artifact: bytes,
                   rollout: str, says: str = "step 1 of") -> str:
    """Declare ``version`` with ``rollout``; wait for it to begin; its config."""
    config = models.declare(model, version, artifact, rollout=rollout)
    wait_for(lambda: says in models.labels(config).get("aiart.status.rollout", ""), 300,
             f"version {version}'s rollout to begin")
    return config


def test_a_canary_promoted_a_bad_one_rolled_back_and_a_shadow(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    model = models.name("canary")
    v1 = f"{model}-1"
    hammer = serving_under_traffic(models, model, iris_pickle)
    try:
        v2 = rollout_begins(models, model, "2", iris_pickle, (
            f"{{strategy: canary, steps: [30, 100], interval: {INTERVAL}, "
            "gate: {maxErrorRate: 0.01, maxP99Ms: 1000, minRequests: 5}}"))
        # The first step: 30 % of the model's traffic, as Traefik counts it.
        # Sampled for 150 answers or until the step's 14th second, whichever
        # comes first (the step lasts 15 s): on a loaded machine the caller
        # gets fewer answers a second, and Traefik's weighted round robin is
        # exact over any run. Timed from the step's own start
        # (aiart.rollout.since), not from when this test saw it: on a loaded
        # machine it sees it late, and the step may be over by the time it
        # reads the labels again. The sample begins with version 2's first
        # answer, the first the split sent it (before the step it had none):
        # a loaded gateway took the split up seconds after the step began,
        # and answers from before then are not the split's.
        begun = models.labels(v2)
        assert "step 1 of 2" in begun["aiart.status.rollout"], begun
        since = float(begun["aiart.rollout.since"])
        start = wait_for(lambda: next(
            (i + 1 for i, version in enumerate(hammer.versions) if version == "2"), None),
            max(1.0, since + 10 - time.time()), "the gateway to send version 2 its share") - 1
        until = time.monotonic() + since + 14 - time.time()
        while len(hammer.versions) - start < 150 and time.monotonic() < until:
            time.sleep(0.1)
        first_step = hammer.versions[start:]
        # Every answer sampled came before the second step could begin.
        assert time.time() < since + 15, (time.time() - since, models.labels(v2))
        # At least 30 answers (a loaded CI machine's caller got 39 in the
        # 9 s), within 8 points of 30 %: far from all (100) or none (0).
        assert len(first_step) >= 30 and abs(share(first_step, "2") - 30) <= 8, (
            Counter(first_step))
        assert models.labels(v1)["aiart.status.current"] == "true"
        # Pinned and versioned calls still reach one version each.
        assert gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS),
                            headers={"X-Aiart-Version": "1"}).json()["model_version"] == "1"
        # The second step: all of it (the gateway takes new weights up within
        # about three seconds: its poll, then its reload).
        wait_for(lambda: "step 2 of 2" in models.labels(v2).get("aiart.status.rollout", ""),
                 60, "version 2's second step")
        # Sampled for 60 answers or 20 s: a loaded machine's caller got 27 in
        # 4 s once. Past this step the rollout promotes version 2, which
        # keeps all of it: a longer sample changes no share.
        time.sleep(3)
        start = len(hammer.versions)
        until = time.monotonic() + 20
        while len(hammer.versions) - start < 60 and time.monotonic() < until:
            time.sleep(0.1)
        second_step = hammer.versions[start:]
        assert len(second_step) > 50 and share(second_step, "2") >= 95, Counter(second_step)
        wait_for(lambda: models.labels(v2).get("aiart.status.current") == "true", 120,
                 "version 2 to be promoted")
        assert "promoted after 2 steps" in models.labels(v2)["aiart.status.rollout"]
        wait_for(lambda: hammer.versions[-20:] == ["2"] * 20, 30, "traffic to be version 2's")

        # A version whose gate cannot pass (no server answers in 1 µs) is rolled
        # back after its first step; the model's traffic stays with version 2.
        v3 = rollout_begins(models, model, "3", iris_pickle, (
            f"{{strategy: canary, steps: [50, 100], interval: {INTERVAL}, "
            "gate: {maxP99Ms: 0.001, minRequests: 5}}"))
        start = len(hammer.versions)
        began = float(models.labels(v3)["aiart.rollout.since"])
        labels = models.wait_status(v3, "Failed", timeout=90)
        # Rolled back within one interval of its gate's reading (the step's end).
        assert time.time() - began < 15 + 15, labels
        assert "rolled back" in labels["aiart.status.message"], labels
        assert "p99" in labels["aiart.status.message"] and "> 0.001 ms" in labels[
            "aiart.status.message"], labels
        during = hammer.versions[start:]
        assert "3" in during  # it had its share before the gate read
        wait_for(lambda: hammer.versions[-20:] == ["2"] * 20, 30,
                 "traffic to be version 2's again")
        assert models.labels(v2)["aiart.status.current"] == "true"
        # It still answers where it is asked for by name.
        assert gateway.get(f"/v2/models/{model}/versions/3/ready").status_code == 200

        # A shadow of version 2: copies of the model's calls, whose answers
        # nobody sees (the caller above keeps calling).
        start = len(hammer.versions)
        shadow_of(models, gateway, model, "4", stable="2", artifact=iris_pickle)
        assert set(hammer.versions[start:]) == {"2"}, Counter(hammer.versions[start:])
    finally:
        hammer.stop.set()
        hammer.join(15)
    assert hammer.failures == [], hammer.failures[:5]


def shadow_of(models: Models, gateway: httpx.Client, model: str, version: str, *,
              stable: str, artifact: bytes) -> None:
    """``version`` as a shadow of ``stable``: it gets copies, callers get the
    stable's answers, its figures are labelled; then it is aborted by hand."""
    rollout_begins(models, model, version, artifact, "{strategy: shadow, percent: 100}",
                   says=f"shadow of version {stable}")

    def mirrored() -> float:
        text = gateway.get(f"/models/{model}/versions/{version}/metrics").text
        for line in text.splitlines():
            if line.startswith("aiart_requests_total{") and 'outcome="ok"' in line and (
                    'endpoint="infer"' in line):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = mirrored()
    answered: list[str] = []

    def copies_arrive() -> bool:
        # The gateway takes up the mirror within a few seconds of the label
        # (it polls the operator every second); meanwhile calls go on.
        for _ in range(20):
            answer = gateway.post(f"/v2/models/{model}/infer", json=infer_body(ROWS))
            assert answer.status_code == 200, answer.text
            answered.append(answer.json()["model_version"])
        return mirrored() - before >= 20

    wait_for(copies_arrive, 60, f"version {version} to receive copies of the model's calls")
    assert set(answered) == {stable}, Counter(answered)  # callers see the stable's answers
    assert models.labels(f"{model}-{stable}")["aiart.status.current"] == "true"
    # Its figures are in Prometheus, labelled as a shadow's.
    wait_for(lambda: value(f'sum(aiart_requests_total{{model="{model}",version="{version}",'
                           f'rollout="shadow",outcome="ok"}})') or 0, 60,
             "Prometheus to hold the shadow's requests, labelled rollout=shadow")

    # Ended by hand with the CLI, through the API (which may write the
    # rollout's command label and nothing else: tests/unit/engine).
    key = keys("create", f"{model}-deployer", "--role", "deployer", "--model", model)
    try:
        status = cli("rollout", "status", model, key=key)
        assert status.returncode == 0 and "Shadowing" in status.stdout, status
        aborted = cli("rollout", "abort", model, key=key)
        assert aborted.returncode == 0 and "abort of" in aborted.stdout, aborted
        labels = models.wait_status(f"{model}-{version}", "Failed", timeout=60)
        assert "aborted by hand" in labels["aiart.status.message"], labels
        assert "aiart.rollout.command" not in labels  # consumed
        again = cli("rollout", "promote", model, key=key)
        assert again.returncode != 0 and "no rollout in progress" in again.stderr, again
    finally:
        keys("revoke", f"{model}-deployer")
