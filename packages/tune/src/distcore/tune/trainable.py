"""Trainables: the Class API (``Trainable``) and the wrappers ``with_parameters`` /
``with_resources``.

Example::

    class MyTrainable(tune.Trainable):
        def setup(self, config):
            self.lr = config["lr"]
        def step(self):
            return {"score": self.lr * self.iteration}
"""

from distcore.tune._internal.trainable import Trainable

__all__ = ["Trainable"]
