#!/usr/bin/env python3
"""Build the wheel and sdist of every package into one directory (standard library + hatchling).

    python3 tools/release/build_packages.py [--out dist]

Runs hatchling's own builder with the current interpreter (no build isolation, no
network), so the interpreter needs hatchling: `.venv/bin/python tools/release/build_packages.py`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "data", "train", "tune", "serve", "rllib")


def build_all(out: Path, root: Path = ROOT) -> list[Path]:
    """Build every package's sdist and wheel into `out`; return the files built."""
    out.mkdir(parents=True, exist_ok=True)
    before = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    for name in PACKAGES:
        subprocess.run(
            [sys.executable, "-m", "hatchling", "build", "--directory", str(out.resolve())],
            cwd=root / "packages" / name,
            check=True,
        )
    return sorted(path for path in out.iterdir() if before.get(path) != path.stat().st_mtime_ns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="default: dist/")
    args = parser.parse_args(argv)
    for path in build_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
