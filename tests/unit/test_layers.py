"""Pure modules stay pure: they import no I/O library, so that parsing,
planning and rendering can be tested, and trusted, without a daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import aiart
import pytest

PURE = ["objects", "spec", "pickle_facts", "plan", "render", "status", "settings", "labels",
        "workqueue", "store_layout", "catalog", "access", "api_views", "alerts", "metrics",
        "store_policy"]
IO_LIBRARIES = {"aiodocker", "aiohttp", "docker", "httpx", "socket", "subprocess", "requests",
                "urllib.request", "urllib3", "asyncio.subprocess", "minio", "pymongo", "motor"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a sibling module: must itself be pure
                found.add(f"aiart.{node.module}" if node.module else "aiart")
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    path = Path(aiart.__file__).with_name(f"{module}.py")
    for name in imported_modules(path):
        # urllib.parse is pure; urllib.request is not.
        assert not {name.split(".")[0], name} & IO_LIBRARIES, f"{module} imports {name}"
        if name.startswith("aiart."):
            sibling = name.removeprefix("aiart.")
            assert sibling in PURE, (
                f"{module} imports {name}, which is not a pure module")
