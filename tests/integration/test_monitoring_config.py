"""The shipped Prometheus configuration and alert rules, checked by the real
promtool (from the stack's Prometheus image): the configuration is valid,
and every alert fires on what should fire it and not on its near miss
(tests/fixtures/monitoring/alerts_test.yml). Alertmanager's entrypoint
writes a configuration that amtool accepts, and refuses a bad webhook URL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def image(kind: str) -> str:
    name = os.environ.get(f"AIART_{kind.upper()}_IMAGE")
    if name:
        return name
    found = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"aiart/{kind}"],
        capture_output=True, text=True, check=True).stdout.split()
    assert found, f"no aiart/{kind} image: run hack/images.sh build_all first"
    return found[0]


def docker_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "run", "--rm", "--label", "aiart.test=monitoring", *args],
                          capture_output=True, text=True, timeout=120)


def test_prometheus_config_is_valid() -> None:
    out = docker_run("--entrypoint", "promtool", "-v", f"{ROOT / 'monitoring'}:/etc/prometheus:ro",
                     image("prometheus"), "check", "config", "/etc/prometheus/prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    # Every rule in alerts.yml is read (none left out by a wrong indentation).
    groups = yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"]
    assert f"{sum(len(g['rules']) for g in groups)} rules found" in out.stdout


def test_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    shutil.copy(ROOT / "monitoring" / "alerts.yml", tmp_path)
    shutil.copy(ROOT / "tests" / "fixtures" / "monitoring" / "alerts_test.yml", tmp_path)
    tmp_path.chmod(0o755)
    out = docker_run("--entrypoint", "promtool", "-v", f"{tmp_path}:/m:ro", "-w", "/m",
                     image("prometheus"), "test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def alertmanager_config(url: str) -> subprocess.CompletedProcess[str]:
    script = ("aiart-alertmanager --version >/dev/null && "
              "amtool check-config /etc/alertmanager/alertmanager.yml >&2 && "
              "cat /etc/alertmanager/alertmanager.yml")
    return docker_run("-e", f"AIART_ALERT_WEBHOOK_URL={url}", "--entrypoint", "sh",
                      image("alertmanager"), "-c", script)


def test_alertmanager_posts_to_the_configured_webhook() -> None:
    out = alertmanager_config("http://hooks.example:8000/aiart")
    assert out.returncode == 0, out.stderr
    assert 'url: "http://hooks.example:8000/aiart"' in out.stdout
    quiet = alertmanager_config("")
    assert quiet.returncode == 0 and "webhook_configs" not in quiet.stdout


@pytest.mark.parametrize("url", ["ftp://x", 'http://x"\n  - name: evil', "http://x y"])
def test_alertmanager_refuses_a_bad_webhook_url(url: str) -> None:
    out = alertmanager_config(url)
    assert out.returncode == 2 and "AIART_ALERT_WEBHOOK_URL" in out.stderr
