"""The ``@remote`` decorator, with and without options."""

from __future__ import annotations

import inspect
from typing import Any


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote task, or a class an actor.

    Example::

        @distcore.remote
        def f(x):
            return x * 2

        @distcore.remote(num_cpus=0.5, max_restarts=1)
        class Worker:
            def work(self):
                return "done"
    """
    from distcore._private.api.actor import ActorClass
    from distcore._private.api.remote_function import RemoteFunction

    def make(target: Any) -> Any:
        if inspect.isclass(target):
            return ActorClass(target, options)
        if callable(target):
            return RemoteFunction(target, options)
        raise TypeError(f"@remote applies to functions and classes, not {type(target).__name__}")

    if len(args) == 1 and not options and (inspect.isclass(args[0]) or callable(args[0])):
        return make(args[0])
    if args:
        raise TypeError(
            "@remote takes either one function/class, or keyword options only: "
            "@remote, or @remote(num_cpus=1, ...)"
        )
    return make
