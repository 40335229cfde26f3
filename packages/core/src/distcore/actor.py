"""Actor types and ``exit_actor`` (Ray's ``ray.actor``).

Example::

    @distcore.remote
    class Service:
        def stop(self):
            distcore.actor.exit_actor()
"""

from distcore._private.api.actor import ActorClass, ActorHandle, ActorMethod, exit_actor, method

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]
