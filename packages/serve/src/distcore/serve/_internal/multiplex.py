"""``@serve.multiplexed``: a per-replica LRU of models loaded by id, and ``get_multiplexed_model_id``."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import OrderedDict
from typing import Any

from distcore.serve._internal.config import check_int
from distcore.serve._internal.context import multiplexed_model_id


def get_multiplexed_model_id() -> str:
    """The model id of the current request (the ``serve_multiplexed_model_id`` header or handle option)."""
    return multiplexed_model_id.get()


class _ModelCache:
    def __init__(self, loader: Any, capacity: int) -> None:
        self.loader = loader
        self.capacity = capacity
        self.models: OrderedDict[str, Any] = OrderedDict()
        self.loading: dict[str, asyncio.Future] = {}

    async def get(self, owner: Any, model_id: str) -> Any:
        if model_id in self.models:
            self.models.move_to_end(model_id)
            return self.models[model_id]
        pending = self.loading.get(model_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self.loading[model_id] = fut
        try:
            while len(self.models) >= self.capacity:
                _, old = self.models.popitem(last=False)
                closer = getattr(old, "__del__", None)
                if closer is not None:
                    try:
                        closer()
                    except Exception:
                        pass
            out = self.loader(owner, model_id) if owner is not None else self.loader(model_id)
            if inspect.isawaitable(out):
                out = await out
            self.models[model_id] = out
            fut.set_result(out)
            return out
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self.loading.pop(model_id, None)


def multiplexed(_func: Any = None, *, max_num_models_per_replica: int = 3) -> Any:
    """Decorate an async model loader ``(self, model_id) -> model``; loaded models are cached per replica (LRU).

    Example::

        @serve.deployment
        class Models:
            @serve.multiplexed(max_num_models_per_replica=2)
            async def get_model(self, model_id: str):
                return load(model_id)

            async def __call__(self, request):
                model = await self.get_model(serve.get_multiplexed_model_id())
    """
    check_int("max_num_models_per_replica", max_num_models_per_replica, 1)

    def decorator(fn: Any) -> Any:
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params) and params[0] == "self"
        attr = f"__serve_models_{fn.__name__}"
        free: dict[str, _ModelCache] = {}

        @functools.wraps(fn)
        async def wrapper(*args: Any) -> Any:
            if is_method:
                owner, rest = args[0], args[1:]
                cache = owner.__dict__.get(attr)
                if cache is None:
                    cache = owner.__dict__[attr] = _ModelCache(fn, max_num_models_per_replica)
            else:
                owner, rest = None, args
                cache = free.get("c") or free.setdefault("c", _ModelCache(fn, max_num_models_per_replica))
            if len(rest) != 1 or not isinstance(rest[0], str):
                raise TypeError("a @serve.multiplexed loader takes one model id (a str)")
            return await cache.get(owner, rest[0])

        return wrapper

    if _func is not None:
        return decorator(_func)
    return decorator
