"""Errors raised by distcore.data."""

from __future__ import annotations


class UserCodeException(Exception):
    """A user function (UDF) of a dataset operator raised; the message names the operator.

    The original exception is its ``__cause__`` and its traceback is shown with it.
    """


class InsufficientResourcesError(RuntimeError):
    """A pipeline cannot fit the cluster; the message names the operator and what is missing."""
