"""Settings: every variable declared once (operator/aiart/core/settings.py),
read by ``from_env`` only, and listed in docs/operations.md from the
declarations."""

from __future__ import annotations

import ast
from pathlib import Path

import aiart
import aiart_runtime
import pytest
from aiart.core.settings import (
    GROUPS,
    CLISettings,
    OIDCSettings,
    OperatorSettings,
    ServiceSettings,
    SettingsError,
    StoreSettings,
    env_table,
    with_table,
)
from aiart_runtime.settings import ServerSettings

ROOT = Path(aiart.__file__).parents[2]


def test_values_are_parsed_and_bad_ones_named() -> None:
    settings = OperatorSettings.from_env({
        "AIART_RESYNC_SECONDS": "2.5", "AIART_WORKERS": "3",
        "AIART_MODEL_CONSTRAINTS": "node.role==worker, zone==a,",
        "AIART_PUBLIC_URL": "https://aiart.example/", "AIART_GATEWAY_HOST": "AIART.example",
        "AIART_S3_MODEL_SECURE": "yes", "AIART_UNKNOWN": "ignored"})
    assert (settings.resync_seconds, settings.workers) == (2.5, 3)
    assert settings.model_constraints == ("node.role==worker", "zone==a")
    # No gateway URL of its own: the operator probes where users call.
    assert settings.public_url == settings.gateway_url == "https://aiart.example"
    assert settings.gateway_host == "aiart.example" and settings.model_store_secure
    with pytest.raises(SettingsError, match=r"AIART_WORKERS: .*integer"):
        OperatorSettings.from_env({"AIART_WORKERS": "many"})
    with pytest.raises(SettingsError, match=r"AIART_BUILDS: .*at least 1, not 0"):
        OperatorSettings.from_env({"AIART_BUILDS": "0"})
    with pytest.raises(SettingsError, match=r"AIART_GATEWAY_HOST: .*DNS name"):
        OperatorSettings.from_env({"AIART_GATEWAY_HOST": "a b`) || Host(`x"})


def test_empty_is_unset_except_for_text() -> None:
    assert OperatorSettings.from_env({"AIART_WORKERS": " "}).workers == 8
    # An empty role prefix is a value: roles without a prefix.
    assert OIDCSettings.from_env({"AIART_OIDC_ROLE_PREFIX": ""}).role_prefix == ""
    assert OIDCSettings.from_env({}).role_prefix == "aiart:"
    assert OIDCSettings.from_env({"AIART_OIDC_ROLES_CLAIM": ""}).roles_claim == (
        "realm_access.roles")


def test_a_secrets_file_wins_and_its_value_never_shows(tmp_path: Path) -> None:
    key = tmp_path / "secret"
    key.write_text("from-the-file\n")
    store = StoreSettings.from_env({
        "AIART_S3_ENDPOINT": "https://minio.example:9000/", "AIART_S3_ACCESS_KEY": "given",
        "AIART_S3_SECRET_KEY": "in-the-environment", "AIART_S3_SECRET_KEY_FILE": str(key)})
    assert (store.endpoint, store.secure) == ("minio.example:9000", True)
    assert (store.access_key, store.secret_key) == ("given", "from-the-file")
    assert "from-the-file" not in repr(store) and "given" not in repr(store)
    with pytest.raises(SettingsError, match=r"AIART_S3_ACCESS_KEY_FILE: .*No such file"):
        StoreSettings.from_env({"AIART_S3_ACCESS_KEY_FILE": str(tmp_path / "missing")})
    assert not StoreSettings.from_env({}).endpoint  # no store


def test_internal_tls_takes_both_files_or_neither() -> None:
    assert ServiceSettings.from_env({}).internal_tls() == (None, None)
    both = ServiceSettings.from_env({"AIART_INTERNAL_TLS_CERT_FILE": "c",
                                     "AIART_INTERNAL_TLS_KEY_FILE": "k"})
    assert both.internal_tls() == ("c", "k")
    with pytest.raises(SettingsError, match="go together"):
        ServiceSettings.from_env({"AIART_INTERNAL_TLS_CERT_FILE": "c"}).internal_tls()


def test_the_cli_finds_its_files_under_the_config_home() -> None:
    assert CLISettings.from_env({"XDG_CONFIG_HOME": "/cfg"}).config_dir == Path("/cfg/aiart")


def test_each_variable_is_declared_once() -> None:
    declared = [f.json_schema_extra["env"] for group in GROUPS  # type: ignore[index]
                for f in group.model_fields.values() if f.json_schema_extra]
    assert len(declared) == len(set(declared)), sorted(
        v for v in declared if declared.count(v) > 1)
    variables = [row.split("|")[1].split("`")[1] for row in env_table().splitlines()[2:]]
    assert len(variables) == len(set(variables)) >= 55
    # A variable both read is one row naming both.
    assert any(row.startswith("| `AIART_PROBE_KEY_FILE` | ") and "," in row.split("|")[2]
               for row in env_table().splitlines())
    for group in GROUPS:
        assert group.program, f"{group.__name__} says who reads it"


def test_the_operations_page_lists_every_variable() -> None:
    """Regenerate with: .venv/bin/python -m aiart.core.settings docs/operations.md"""
    page = (ROOT / "docs/operations.md").read_text()
    assert with_table(page) == page, (
        "docs/operations.md's table is out of date: "
        ".venv/bin/python -m aiart.core.settings docs/operations.md")
    for name in ("AIART_GATEWAY_TOKEN", "AIART_GENMODEL_JAR", "AIART_PICKLE_ALLOWLIST"):
        assert name in page
    assert ServerSettings.from_env({"AIART_GATEWAY_TOKEN": "t"}).gateway_token == "t"


def _reads_the_environment(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and (
                isinstance(node.value, ast.Name) and node.value.id == "os"):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("package", [aiart, aiart_runtime], ids=lambda p: p.__name__)
def test_only_the_settings_modules_read_the_environment(package: object) -> None:
    base = Path(package.__file__).parent  # type: ignore[attr-defined]
    # The runtime's tracing reads OpenTelemetry's own OTEL_* variables, as
    # the OpenTelemetry SDK it configures does.
    allowed = {"settings.py", "tracing.py"} if package is aiart_runtime else {"core/settings.py"}
    readers = {str(p.relative_to(base)): lines for p in sorted(base.rglob("*.py"))
               if (lines := _reads_the_environment(p))}
    assert set(readers) <= allowed, readers
