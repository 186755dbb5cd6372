"""The layers: imports point down only, the parts never import each other, and the pure core does no I/O.

core <- adapters <- loops (what the parts share) <- server | tracker | patcher <- cli (serve wires the parts).
"""

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


PARTS = ("server", "tracker", "patcher")
# What each package may import of ours (itself included).
ALLOWED = {
    "core": {"core"},
    "adapters": {"core", "adapters"},
    "loops": {"core", "adapters", "loops"},
    **{part: {"core", "adapters", "loops", part} for part in PARTS},
    "cli": {"core", "adapters", "loops", "cli", *PARTS},
}
COMPOSITION_ROOT = "webhook.cli.serve"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _ours(path: Path) -> set[str]:
    """The modules of ours `path` imports, at any depth (a lazy import counts too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "webhook"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "webhook":
            for alias in node.names:  # `from webhook.cli import doctor` imports the module webhook.cli.doctor
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


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
        assert name.split(".")[0] != "webhook" or _package(name) == "core", f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_does_no_io_and_reads_no_clock(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in IO_CALLS, f"{path.name} calls {node.func.id}()"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in IO_ATTRIBUTES, f"{path.name} uses {node.value.id}.{node.attr}"


def test_every_module_is_in_a_known_package() -> None:
    packages = {_package(m) for m in MODULES if m.count(".") >= 1} - {"__main__"}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("module", [m for m in MODULES if _package(m) in ALLOWED])
def test_imports_point_down_and_parts_never_import_each_other(module: str) -> None:
    allowed = ALLOWED[_package(module)] | {""}  # "": webhook/__init__.py, the version
    wrong = sorted(n for n in _ours(MODULES[module]) if _package(n) not in allowed)
    assert wrong == [], f"{module} imports {wrong}"


@pytest.mark.parametrize("module", [m for m in MODULES if _package(m) == "cli"])
def test_only_the_composition_root_wires_parts_together(module: str) -> None:
    parts = {_package(n) for n in _ours(MODULES[module])} & set(PARTS)
    assert len(parts) <= 1 or module == COMPOSITION_ROOT, f"{module} wires {sorted(parts)} together"


def test_the_rules_above_can_fail() -> None:
    # The composition root does wire the parts: were it to stop, the test above would hold vacuously.
    assert {_package(n) for n in _ours(MODULES[COMPOSITION_ROOT])} >= {"server", "tracker", "patcher"}
    assert ALLOWED["tracker"].isdisjoint({"server", "patcher", "cli"})


def test_nothing_imports_the_cli_but_main() -> None:
    importers = sorted(m for m, p in MODULES.items()
                       if _package(m) != "cli" and any(_package(n) == "cli" for n in _ours(p)))
    assert importers == ["webhook.__main__"]


def test_no_import_cycles() -> None:
    graph = {m: {n for n in _ours(p) if n in MODULES and n != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path[path.index(target):], target])}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_only_adapters_talk_to_the_kubernetes_client() -> None:
    offenders = [m for m, p in MODULES.items()
                 if _package(m) != "adapters" and any(n.split(".")[0] == "kubernetes" for n in _imports(p))]
    assert offenders == []
