"""The layout is the architecture: each wing of ``aiart`` (a sub-package)
imports only the wings below it, the core imports nothing but itself, and
every module that says it is pure imports no I/O library, so that parsing,
planning, policies and rendering can be tested, and trusted, without a
daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import aiart
import pytest

PACKAGE = Path(aiart.__file__).parent
# Which wings each wing may import (itself always). No cycles: a wing never
# reaches a wing that reaches it.
MAY_IMPORT = {
    "core": set(),
    "engine": {"core"},
    "catalog": {"core"},
    "store": {"core"},
    "build": {"core", "engine"},
    "auth": {"core", "engine"},
    "control": {"core", "engine", "build", "store", "catalog", "auth"},
    "transfer": {"core", "engine", "store", "catalog"},
    "api": {"core", "engine", "store", "catalog", "auth", "transfer"},
    "activator": {"core"},
    "streams": {"core"},
    "cli": {"core", "engine", "build", "store", "catalog", "auth", "transfer"},
    "ui": {"core", "engine", "store", "catalog", "auth", "api", "transfer"},
}
IO_LIBRARIES = {"aiodocker", "aiohttp", "docker", "httpx", "socket", "subprocess", "requests",
                "urllib.request", "urllib3", "asyncio.subprocess", "minio", "pymongo", "motor",
                "uvicorn", "starlette", "paho"}
MODULES = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.name}: aiart's modules import each other by full name"
            found |= {node.module or ""}
            # from aiart.core import labels: the module is aiart.core.labels
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if node.module and node.module.startswith("aiart.")}
    return found


def says_it_is_pure(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return "Pure:" in doc or "Pure " in doc


def test_every_module_lives_in_a_wing() -> None:
    loose = [str(m) for m in MODULES if len(m.parts) == 1 and m.name != "__init__.py"]
    assert not loose, f"modules outside the wings: {loose}"
    assert {m.parts[0] for m in MODULES if len(m.parts) > 1} == set(MAY_IMPORT)
    for wing in MAY_IMPORT:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
        assert doc and len(doc) > 60, f"{wing}/__init__.py says what the wing is"


@pytest.mark.parametrize("module", [m for m in MODULES if len(m.parts) > 1], ids=str)
def test_a_wing_imports_only_the_wings_below_it(module: Path) -> None:
    wing = module.parts[0]
    for name in imported_modules(PACKAGE / module):
        parts = name.split(".")
        if parts[0] != "aiart" or len(parts) < 2 or parts[1] not in MAY_IMPORT:
            continue  # another library, or aiart's own __version__
        assert parts[1] in MAY_IMPORT[wing] | {wing}, f"{module} ({wing}) imports {name}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.parts[0] == "core"
                                    or says_it_is_pure(PACKAGE / m)], ids=str)
def test_pure_modules_import_no_io(module: Path) -> None:
    for name in imported_modules(PACKAGE / module):
        # urllib.parse is pure; urllib.request is not.
        assert not {name.split(".")[0], name} & IO_LIBRARIES, f"{module} imports {name}"
        if name.startswith("aiart.") and name.count(".") >= 2:
            wing, leaf = name.split(".")[1:3]
            target = PACKAGE / wing / f"{leaf}.py"
            assert wing == "core" or not target.exists() or says_it_is_pure(target), (
                f"{module} imports {name}, which is not pure")


def test_the_pure_modules_are_the_ones_expected() -> None:
    """The self-declared pure modules (a guard against a docstring edit
    quietly dropping one from the check above)."""
    pure = {str(m) for m in MODULES if m.parts[0] != "core" and says_it_is_pure(PACKAGE / m)}
    assert {"engine/policy.py", "store/policy.py", "auth/access.py", "api/views.py",
            "catalog/records.py", "build/pickle_facts.py", "control/workqueue.py",
            "control/metrics.py"} <= pure


def test_every_package_ships() -> None:
    """Each wing is in the wheel that aiart's images install (pyproject.toml
    lists them by hand): a wing left out imports here and is missing there."""
    import tomllib
    root = PACKAGE.parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(("aiart", *p.parent.parts)).rstrip(".") for p in MODULES
             if p.name == "__init__.py"}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
