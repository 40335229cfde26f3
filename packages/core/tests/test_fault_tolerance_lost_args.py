"""A task whose worker could not fetch one of its arguments is retried like a crashed one.

The chaos run found it: a ``digest`` task's worker sat on a node being
killed; its pull of the argument failed (its node manager was gone), and the
``ObjectLostError`` came back as the task's own error: not retried, a lost
result. ``submitter.lost_argument`` tells that failure (the cause is an
``ObjectLostError`` of one of the task's arguments) from the user's errors.
"""

from __future__ import annotations

from distcore._private import protocol as p
from distcore._private.core_worker.submitter import lost_argument
from distcore._private.serialization import ErrorValue, serialize
from distcore.exceptions import (
    ObjectLostError,
    ObjectReconstructionFailedError,
    OwnerDiedError,
    TaskError,
)


def _spec(arg_ids: list[str]) -> p.TaskSpec:
    return p.TaskSpec(
        task_id="t1", job_id="00000001", name="digest", function_id="f", kind=p.NORMAL_TASK,
        args=[p.TaskArg(object_id=oid) for oid in arg_ids], kwargs={}, num_returns=1, return_ids=["r1"],
        owner=p.Address("127.0.0.1", 1, "driver", "n0"), resources={"CPU": 1.0},
    )


def _failed_with(cause: BaseException) -> p.TaskReply:
    # What the executor replies when the task raised ``cause`` (``executor._failure``).
    error = TaskError("digest", "Traceback ...", cause, 123, "127.0.0.1")
    value = p.SerializedValue(serialize(ErrorValue(error)).to_bytes())
    return p.TaskReply([p.ReturnObject("r1", value, is_error=True)], is_application_error=True)


def test_a_lost_argument_is_a_system_failure_but_user_errors_and_permanent_losses_are_not():
    spec = _spec(["arg1"])
    assert lost_argument(spec, _failed_with(ObjectLostError("arg1", "", "node gone while pulling it")))
    assert not lost_argument(spec, _failed_with(ObjectLostError("other", "", "a get inside the task")))
    assert not lost_argument(spec, _failed_with(ValueError("the user's bug")))
    assert not lost_argument(spec, _failed_with(OwnerDiedError("arg1", "", "its owner died")))
    assert not lost_argument(spec, _failed_with(ObjectReconstructionFailedError("arg1", "", "lineage failed")))
    assert not lost_argument(_spec([]), _failed_with(ObjectLostError("arg1", "", "no arguments")))
