"""``tune.with_parameters``: large objects go to the object store once and every
trial reads them from there (zero-copy for numpy arrays on the same node)."""

from __future__ import annotations

import inspect
import threading
from typing import Any

_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


class _Parameters:
    """Holds the objects on the driver; pickles as object refs (put on first use)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values: dict[str, Any] | None = dict(values)
        self._refs: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def refs(self) -> dict[str, Any]:
        with self._lock:
            if self._refs is None:
                import distcore

                assert self._values is not None
                self._refs = {name: distcore.put(value) for name, value in self._values.items()}
                self._values = None  # the store holds them now
            return self._refs

    def __getstate__(self) -> dict[str, Any]:
        return {"refs": self.refs()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._refs = state["refs"]
        self._values = None
        self._lock = threading.Lock()

    def resolve(self) -> dict[str, Any]:
        """The objects, fetched once per process."""
        if self._values is not None:
            return dict(self._values)
        import distcore

        refs = self.refs()
        out: dict[str, Any] = {}
        missing = []
        with _CACHE_LOCK:
            for name, ref in refs.items():
                key = ref.hex() if hasattr(ref, "hex") else str(ref)
                if key in _CACHE:
                    out[name] = _CACHE[key]
                else:
                    missing.append((name, key, ref))
        if missing:
            values = distcore.get([ref for _, _, ref in missing], timeout=600)
            with _CACHE_LOCK:
                for (name, key, _), value in zip(missing, values, strict=True):
                    _CACHE[key] = value
                    out[name] = value
        return out


class _FunctionWithParameters:
    def __init__(self, fn: Any, params: _Parameters) -> None:
        self._tune_inner = fn
        self._tune_parameters = params
        self.__name__ = getattr(fn, "__name__", "trainable")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        if hasattr(fn, "_tune_resources"):
            self._tune_resources = fn._tune_resources

    def __call__(self, config: dict[str, Any]) -> Any:
        return self._tune_inner(config, **self._tune_parameters.resolve())


def with_parameters(trainable: Any, **kwargs: Any) -> Any:
    """Pass large objects to every trial through the object store (put once).

    Example::

        def train_fn(config, data):
            ...
        tuner = tune.Tuner(tune.with_parameters(train_fn, data=big_array), param_space=space)
    """
    if not kwargs:
        raise ValueError("with_parameters needs at least one keyword argument")
    from distcore.tune._internal.trainable import Trainable

    params = _Parameters(kwargs)
    if isinstance(trainable, type) and issubclass(trainable, Trainable):
        base_setup = trainable.setup

        class _WithParameters(trainable):  # type: ignore[valid-type, misc]
            _tune_parameters = params

            def setup(self, config: dict[str, Any]) -> None:
                base_setup(self, config, **type(self)._tune_parameters.resolve())

        _WithParameters.__name__ = trainable.__name__
        _WithParameters.__qualname__ = trainable.__qualname__
        return _WithParameters
    if not callable(trainable):
        raise TypeError(f"with_parameters needs a function or Trainable class, got {type(trainable).__name__}")
    try:
        signature = inspect.signature(trainable)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        names = set(signature.parameters)
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        unknown = [name for name in kwargs if name not in names]
        if unknown and not has_var_kw:
            raise TypeError(f"with_parameters: {getattr(trainable, '__name__', trainable)} takes no "
                            f"parameter(s) {unknown}")
    return _FunctionWithParameters(trainable, params)
