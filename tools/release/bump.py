#!/usr/bin/env python3
"""Set one version on all six packages, keep the library pins in step, then build.

    .venv/bin/python tools/release/bump.py 0.2.0          bump, then build into dist/
    .venv/bin/python tools/release/bump.py 0.2.0 --no-build
    python3 tools/release/bump.py --check                  only verify that all agree

Version X.Y.Z sets core's ``__version__`` and ``API_VERSION = "X.Y"``, every library's
``__version__``, and every ``distcore`` / ``distcore-<lib>`` pin to ``>=X.Y,<X+1`` (in
pyproject.toml and in the library's import-time check, ``CORE_API_MIN``/``CORE_API_MAX``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("data", "train", "tune", "serve", "rllib")
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)((a|b|rc)\d+)?$")
PIN = re.compile(r'"(distcore(?:-(?:' + "|".join(LIBRARIES) + r'))?)>=[^,"]+,<[^"]+"')


def version_file(root: Path, package: str) -> Path:
    if package == "core":
        return root / "packages" / "core" / "src" / "distcore" / "_version.py"
    return root / "packages" / package / "src" / "distcore" / package / "_version.py"


def _set(text: str, name: str, value: str, path: Path) -> str:
    new, count = re.subn(rf'^{name} = "[^"]*"$', f'{name} = "{value}"', text, flags=re.M)
    if count != 1:
        raise SystemExit(f'{path}: expected one line `{name} = "..."`, found {count}')
    return new


def bump(version: str, root: Path = ROOT) -> list[Path]:
    """Rewrite the version files and pins under `root`; return the files changed."""
    match = VERSION.match(version)
    if match is None:
        raise SystemExit(f"bad version {version!r}: expected X.Y.Z (optionally aN, bN or rcN)")
    major, minor = int(match[1]), int(match[2])
    low, high = f"{major}.{minor}", str(major + 1)
    edits: dict[Path, str] = {}
    path = version_file(root, "core")
    text = _set(path.read_text(), "__version__", version, path)
    edits[path] = _set(text, "API_VERSION", low, path)
    for lib in LIBRARIES:
        path = version_file(root, lib)
        text = _set(path.read_text(), "__version__", version, path)
        text = _set(text, "CORE_API_MIN", low, path)
        edits[path] = _set(text, "CORE_API_MAX", high, path)
        path = root / "packages" / lib / "pyproject.toml"
        text, count = PIN.subn(lambda m: f'"{m[1]}>={low},<{high}"', path.read_text())
        if count == 0:
            raise SystemExit(f"{path}: no `distcore>=X.Y,<N` pin found")
        edits[path] = text
    changed = [p for p, text in edits.items() if p.read_text() != text]
    for p in changed:
        p.write_text(edits[p])
    return changed


def _read(path: Path, name: str) -> str:
    match = re.search(rf'^{name} = "([^"]*)"$', path.read_text(), flags=re.M)
    return match[1] if match else "<missing>"


def check(root: Path = ROOT) -> list[str]:
    """Every way the packages disagree on versions or pins (empty when consistent)."""
    core = version_file(root, "core")
    version, api = _read(core, "__version__"), _read(core, "API_VERSION")
    high = str(int(api.split(".")[0]) + 1) if api[:1].isdigit() else "?"
    want_pin = f">={api},<{high}"
    problems = []
    for lib in LIBRARIES:
        path = version_file(root, lib)
        for name, want in (("__version__", version), ("CORE_API_MIN", api), ("CORE_API_MAX", high)):
            if (got := _read(path, name)) != want:
                problems.append(f"{path}: {name} is {got!r}, core says {want!r}")
        pyproject = root / "packages" / lib / "pyproject.toml"
        for pin in PIN.finditer(pyproject.read_text()):
            if not pin[0].endswith(f'{want_pin}"'):
                problems.append(f"{pyproject}: pin {pin[0]} should be {pin[1]}{want_pin}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", nargs="?", help="the new version, X.Y.Z")
    parser.add_argument("--no-build", action="store_true", help="do not build into dist/")
    parser.add_argument("--check", action="store_true", help="only verify consistency")
    args = parser.parse_args(argv)
    if not args.check:
        if args.version is None:
            parser.error("give the new version, or --check")
        for path in bump(args.version):
            print(f"updated {path.relative_to(ROOT)}")
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems or args.check or args.no_build:
        return 1 if problems else 0
    from build_packages import build_all  # beside this file

    for path in build_all(ROOT / "dist"):
        print(f"built {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
