#!/usr/bin/env python3
"""Set up a development environment and run the demo or the tests (standard library only).

    python3 tools/dev.py setup             create .venv and install everything (idempotent)
    python3 tools/dev.py demo              set up, then run examples/demo.py
    python3 tools/dev.py test [ARGS...]    set up, then pytest the whole suite except `slow` tests
    python3 tools/dev.py test --slow       only the `slow` tests

Extra ARGS go to pytest (`tools/dev.py test packages/tune/tests -x`). The install is skipped
when a stamp in .venv shows the requirements and the packages' pyproject.toml files unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".distcore-dev-stamp"
PACKAGES = ("core", "data", "train", "tune", "serve", "rllib")
EXTRAS = {
    "core": "[default]",
    "data": "[images,torch]",
    "train": "[torch]",
    "tune": "[optuna,hyperopt,rich,tensorboard]",
    "serve": "[fastapi]",
}
# Build tools first: the packages are then installed editable without build isolation.
BUILD_REQUIREMENTS = ["hatchling>=1.21", "editables>=0.5"]
# torch is pinned so that pip takes the small CPU build, never a multi-GB CUDA one.
DEV_REQUIREMENTS = [
    "torch==2.13.0",
    "pytest>=8",
    "pytest-timeout>=2.2",
    "httpx>=0.27",
    "ruff>=0.6",
    "mypy>=1.10",
]


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str | Path]) -> None:
    print("+", " ".join(str(part) for part in cmd), flush=True)
    subprocess.run([str(part) for part in cmd], check=True, cwd=ROOT)


def requirements_digest() -> str:
    digest = hashlib.sha256(repr((BUILD_REQUIREMENTS, DEV_REQUIREMENTS, EXTRAS)).encode())
    for name in PACKAGES:
        digest.update((ROOT / "packages" / name / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def setup() -> Path:
    """Create .venv if missing and install the packages editable plus the test tools."""
    if sys.version_info < (3, 11):  # noqa: UP036 (may run under an older python3)
        sys.exit(f"distcore needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    python = venv_python()
    if not python.exists():
        try:
            run([sys.executable, "-m", "venv", VENV])
        except subprocess.CalledProcessError:
            sys.exit("Could not create .venv; on Debian/Ubuntu install python3-venv first.")
    digest = requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        print(f"{VENV.name} is up to date (delete {STAMP} to force a reinstall).", flush=True)
        return python
    pip: list[str | Path] = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    run([*pip, *BUILD_REQUIREMENTS])
    editables: list[str | Path] = []
    for name in PACKAGES:
        editables += ["-e", f"packages/{name}{EXTRAS.get(name, '')}"]
    run([*pip, "--no-build-isolation", *editables, *DEV_REQUIREMENTS])
    STAMP.write_text(digest + "\n")
    return python


def compile_bytecode(python: Path) -> None:
    """Write the packages' bytecode caches, as pip does when it installs a wheel.

    Editable installs leave this to the first import, which skips it where
    PYTHONDONTWRITEBYTECODE is set: every process (each worker of a cluster)
    would then compile distcore from source as it starts. Up-to-date caches
    are skipped, so this costs well under a second after the first time."""
    sources = [str(ROOT / "packages" / name / "src") for name in PACKAGES]
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", *sources], cwd=ROOT,
                   stdout=subprocess.DEVNULL, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/dev.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create .venv and install all packages editable")
    commands.add_parser("demo", help="run examples/demo.py on the embedded local cluster")
    test = commands.add_parser(
        "test", help="run pytest; other arguments go to pytest", allow_abbrev=False
    )
    test.add_argument("--slow", action="store_true", help="run only the tests marked slow")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    python = setup()
    compile_bytecode(python)
    if args.command == "demo":
        return subprocess.call([str(python), str(ROOT / "examples" / "demo.py")], cwd=ROOT)
    if args.command == "test":
        marker = "slow" if args.slow else "not slow"
        # A `-m` among the pass-through arguments comes later and wins.
        return subprocess.call([str(python), "-m", "pytest", "-m", marker, *rest], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
