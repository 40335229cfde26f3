"""Libraries use only core's public API: no `distcore._private`, no other library's `_internal`.

The scan is static (AST), so it also sees imports inside functions and
`importlib.import_module("...")` / `__import__("...")` calls with a literal name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("data", "train", "tune", "serve", "rllib")


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}"


def is_forbidden(module: str, library: str) -> bool:
    """True if code of distcore.<library> may not import `module`."""
    parts = module.split(".")
    if parts[0] != "distcore" or len(parts) < 2:
        return False
    if parts[1] == "_private":
        return True
    return len(parts) >= 3 and parts[2] == "_internal" and parts[1] != library


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every absolute module name the code imports, with its line number."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from distcore import _private` names the module as an imported attribute.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def find_violations(src: Path, library: str) -> list[Violation]:
    """Scan every .py file under `src` (a library's src/ directory)."""
    violations = []
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        first_per_line: dict[int, str] = {}
        for line, module in imported_modules(tree):
            if is_forbidden(module, library):
                first_per_line.setdefault(line, module)
        violations += [
            Violation(path, line, module) for line, module in sorted(first_per_line.items())
        ]
    return violations


@pytest.mark.parametrize("library", LIBRARIES)
def test_library_uses_only_public_core_api(library: str) -> None:
    src = ROOT / "packages" / library / "src"
    assert src.is_dir(), f"missing {src}"
    violations = find_violations(src, library)
    assert not violations, "private imports:\n" + "\n".join(map(str, violations))


def test_scanner_finds_planted_violations(tmp_path: Path) -> None:
    planted = tmp_path / "distcore" / "serve" / "bad.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        "import importlib\n"
        "import distcore._private.rpc\n"  # 2
        "from distcore._private import ids\n"  # 3
        "from distcore import _private\n"  # 4
        "from distcore.tune._internal.trial import Trial\n"  # 5
        "import distcore.serve._internal.router\n"  # 6: own internals are fine
        "from distcore.exceptions import TaskError\n"  # 7: public API
        "def later():\n"
        "    return importlib.import_module('distcore.data._internal.plan')\n"  # 9
        "x = __import__('distcore._private.ids')\n"  # 10
    )
    found = {(v.line, v.module) for v in find_violations(tmp_path, "serve")}
    assert found == {
        (2, "distcore._private.rpc"),
        (3, "distcore._private"),
        (4, "distcore._private"),
        (5, "distcore.tune._internal.trial"),
        (9, "distcore.data._internal.plan"),
        (10, "distcore._private.ids"),
    }
    message = str(find_violations(tmp_path, "serve")[0])
    assert message == f"{planted}:2: imports distcore._private.rpc"
