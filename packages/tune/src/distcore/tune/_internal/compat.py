"""Train's shared classes (Checkpoint, RunConfig, ... and the session hook).

tune re-exports train's classes; this module is the one place that imports them.
"""

from __future__ import annotations

from distcore.train import (  # noqa: F401
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    Result,
    RunConfig,
)
from distcore.train import session as train_session  # noqa: F401
