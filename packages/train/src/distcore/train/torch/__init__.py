"""distcore.train.torch: PyTorch DDP training on distcore (mirrors ``ray.train.torch``).

Needs PyTorch: ``pip install 'distcore-train[torch]'``.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "distcore.train.torch needs PyTorch, which is not installed: pip install 'distcore-train[torch]'"
    ) from _exc

__all__: list[str] = []
