"""The import rules of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cluster", "fpga_models", "actors", "deploy")
FORBIDDEN = {
    "cluster": {"ray", "vllm", "grpc", "torch", "actors", "deploy", "fpga_models", "tetriserve"},
    "fpga_models": {"ray", "vllm", "grpc", "torch", "actors", "deploy", "tetriserve"},
    "actors": {"deploy"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources(package)
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert violations == []


def test_every_package_has_sources() -> None:
    for package in PACKAGES:
        assert sources(package), f"{package}/ has no Python sources"


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import ray.serve\nfrom vllm import LLM\nfrom . import sibling\n")
    assert imported_modules(module) == {"ray.serve", "vllm"}
