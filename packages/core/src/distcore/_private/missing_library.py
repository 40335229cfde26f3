"""A clear error for ``import distcore.<library>`` when that library is not installed.

The libraries ship as separate distributions (``distcore-tune``, ...). Without
this hook, ``import distcore.serve`` on a machine that has only ``distcore``
fails with a bare "No module named 'distcore.serve'". :func:`install` appends a
finder to the *end* of ``sys.meta_path``: it is asked only after every normal
finder came up empty, so it never shadows an installed library, and then it
raises a :class:`ModuleNotFoundError` that names the distribution to install.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

# import name -> distribution that provides it
LIBRARIES: dict[str, str] = {
    f"distcore.{lib}": f"distcore-{lib}" for lib in ("data", "train", "tune", "serve", "rllib")
}


class MissingLibraryFinder:
    """Meta path finder that turns a missing ``distcore.<library>`` into a helpful error."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        distribution = LIBRARIES.get(fullname)
        if distribution is None:
            return None
        # Finders appended after this one still get their turn before we fail.
        later = sys.meta_path[sys.meta_path.index(self) + 1 :] if self in sys.meta_path else []
        for finder in later:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if isinstance(spec, ModuleSpec):
                return spec
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: {fullname} is provided by the {distribution} "
            f"distribution: pip install {distribution}",
            name=fullname,
        )


def install() -> None:
    """Append the finder to ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(finder, MissingLibraryFinder) for finder in sys.meta_path):
        sys.meta_path.append(MissingLibraryFinder())
