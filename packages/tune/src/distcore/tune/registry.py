"""Named trainables and environments.

Example::

    from distcore import tune

    tune.register_env("my_env", lambda env_config: MyEnv(env_config))
    creator = tune.registry.get_env_creator("my_env")
"""

from distcore.tune._internal.registry import (
    get_env_creator,
    get_trainable_cls,
    register_env,
    register_trainable,
)

__all__ = ["get_env_creator", "get_trainable_cls", "register_env", "register_trainable"]
