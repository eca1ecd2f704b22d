"""The direction of imports (DESIGN.md): limits and inference are leaves, nothing imports tasks,
scheduler never imports torch or inference at module level (CLI commands may, inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scheduler", "tasks", "limits", "inference")
ALLOWED = {
    "limits": set(),
    "inference": set(),
    "scheduler": {"limits"},
    "tasks": {"scheduler", "inference", "limits"},
}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_design_direction(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        ours = _imports(path, top_level_only=False) & set(PACKAGES)
        # The one exception: CLI commands that need model code import inference inside the command.
        if path.name == "cli.py":
            ours = _imports(path, top_level_only=True) & set(PACKAGES)
        bad = ours - ALLOWED[package] - {package}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_api_side_never_imports_torch() -> None:
    for path in (ROOT / "scheduler").rglob("*.py"):
        assert "torch" not in _imports(path, top_level_only=path.name == "cli.py"), path
    for path in (ROOT / "limits").rglob("*.py"):
        assert "torch" not in _imports(path, top_level_only=False), path
