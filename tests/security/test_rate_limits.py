"""Rate limits count per caller and per model, not per address: one key's
flood gets 429s while another key, from the same address, is still served.
Against the real Traefik and auth service."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Models, aiart, wait_for

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


def test_one_keys_flood_does_not_starve_another_key(
        models: Models, iris_pickle: bytes, gateway: httpx.Client, run_id: str) -> None:
    model = models.name("limited-keys")
    config = models.declare(model, "1", iris_pickle, auth="{mode: apikey}",
                            rateLimit="{average: 1, burst: 2}")
    models.wait_status(config, "Ready")
    names = [f"t{run_id}-flood", f"t{run_id}-calm"]
    flood, calm = (aiart("keys", "create", n, "--model", model) for n in names)
    try:
        url = f"/v2/models/{model}/infer"

        def call(key: str) -> int:
            return gateway.post(url, json=ROW, headers={"X-API-Key": key}).status_code

        wait_for(lambda: call(calm) == 200, 30, "the new keys to be taken")
        codes = [call(flood) for _ in range(12)]
        assert codes.count(429) >= 6, codes
        # Same client address, another key: its own bucket; the flooding key's
        # stays spent (a token comes back each second: on a slow machine one
        # may have by its next call, not by the ones right after).
        assert call(calm) == 200
        assert 429 in [call(flood) for _ in range(4)]
    finally:
        for name in names:
            aiart("keys", "revoke", name)
