"""The three layers: imports point down only, and the pure core does no I/O and reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "webhook"
CORE_ALLOWED = {"__future__", "base64", "collections", "copy", "dataclasses", "datetime", "enum", "hashlib",
                "ipaddress", "re", "typing", "orjson", "cryptography", "webhook"}
IO_CALLS = {"open", "print", "input"}
IO_ATTRIBUTES = {("datetime", "now"), ("datetime", "utcnow"), ("time", "time"), ("time", "monotonic"),
                 ("os", "environ"), ("Path", "read_text"), ("Path", "write_text")}


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_imports_only_pure_libraries(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] in CORE_ALLOWED, f"{path.name} imports {name}"
        assert not name.startswith(("webhook.adapters", "webhook.edges")), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_does_no_io_and_reads_no_clock(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in IO_CALLS, f"{path.name} calls {node.func.id}()"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in IO_ATTRIBUTES, f"{path.name} uses {node.value.id}.{node.attr}"


@pytest.mark.parametrize("path", _modules("adapters"), ids=lambda p: p.name)
def test_adapters_never_import_edges(path: Path) -> None:
    assert not [n for n in _imports(path) if n.startswith("webhook.edges")]


def test_only_adapters_talk_to_the_kubernetes_client() -> None:
    offenders = [p.name for layer in ("core", "edges") for p in _modules(layer)
                 if any(n.split(".")[0] == "kubernetes" for n in _imports(p))]
    assert offenders == []
