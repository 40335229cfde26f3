"""The state machine of one submitted job: typed events in, a new record out.

No I/O: the supervisor (:mod:`manager`) turns what happens to a driver
process into events and persists what :func:`transition` returns.

::

    PENDING --Started--> RUNNING --Exited(0)--------> SUCCEEDED
       |                    |----Exited(n != 0)----> FAILED
       |                    |----Exited(stopping)--> STOPPED
       |                    '----Failed-----------> FAILED
       |----StoppedBeforeStart-------------------> STOPPED
       '----Failed-------------------------------> FAILED

Terminal records never change again: an event for one raises
:class:`InvalidTransition`.

Example::

    info = JobInfo("j1", "python x.py", start_time=0)
    info = transition(info, Started(pid=42, time_ms=1))
    info = transition(info, Exited(exit_code=0, time_ms=2))
    assert info.status is JobStatus.SUCCEEDED
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from distcore._private.jobs.common import JobInfo, JobStatus

ENTRYPOINT_ERROR = "JOB_ENTRYPOINT_COMMAND_ERROR"
SETUP_ERROR = "RUNTIME_ENV_SETUP_FAILURE"
START_ERROR = "JOB_ENTRYPOINT_START_FAILURE"
RESOURCES_ERROR = "JOB_ENTRYPOINT_RESOURCES_UNAVAILABLE"
LOST_ERROR = "JOB_SUPERVISOR_LOST"


class InvalidTransition(ValueError):
    """An event that does not apply to the job's current status."""


@dataclass(frozen=True)
class Started:
    """The driver process started."""

    pid: int
    time_ms: int


@dataclass(frozen=True)
class Exited:
    """The driver process exited; ``stopping`` when a stop was requested first."""

    exit_code: int
    time_ms: int
    stopping: bool = False
    log_tail: str = ""


@dataclass(frozen=True)
class StoppedBeforeStart:
    """A stop arrived while the job was still pending: its driver never runs."""

    time_ms: int


@dataclass(frozen=True)
class Failed:
    """The job cannot run or go on (environment setup, resources, a lost head)."""

    message: str
    error_type: str
    time_ms: int
    exit_code: int | None = None


Event = Started | Exited | StoppedBeforeStart | Failed


def transition(info: JobInfo, event: Event) -> JobInfo:
    """The record after ``event``; ``info`` itself is left unchanged.

    Raises:
        InvalidTransition: the event does not apply to ``info.status``.
    """
    status = info.status
    if status.is_terminal():
        raise InvalidTransition(f"job {info.submission_id!r} is {status.value}; {type(event).__name__} cannot change it")
    if isinstance(event, Started):
        _expect(info, event, JobStatus.PENDING)
        return dataclasses.replace(info, status=JobStatus.RUNNING, driver_pid=event.pid,
                                   message="Job is currently running.")
    if isinstance(event, Exited):
        _expect(info, event, JobStatus.RUNNING)
        done = dict(driver_exit_code=event.exit_code, end_time=event.time_ms)
        if event.stopping:
            return dataclasses.replace(info, status=JobStatus.STOPPED, message="Job was intentionally stopped.", **done)
        if event.exit_code == 0:
            return dataclasses.replace(info, status=JobStatus.SUCCEEDED, message="Job finished successfully.", **done)
        message = f"Job entrypoint command failed with exit code {event.exit_code}"
        if event.log_tail:
            message += f", last lines of its log:\n{event.log_tail}"
        return dataclasses.replace(info, status=JobStatus.FAILED, message=message, error_type=ENTRYPOINT_ERROR, **done)
    if isinstance(event, StoppedBeforeStart):
        _expect(info, event, JobStatus.PENDING)
        return dataclasses.replace(info, status=JobStatus.STOPPED, end_time=event.time_ms,
                                   message="Job was stopped before its entrypoint started.")
    if isinstance(event, Failed):
        return dataclasses.replace(info, status=JobStatus.FAILED, message=event.message, error_type=event.error_type,
                                   end_time=event.time_ms, driver_exit_code=event.exit_code)
    raise TypeError(f"not a job event: {event!r}")


def _expect(info: JobInfo, event: Event, status: JobStatus) -> None:
    if info.status is not status:
        raise InvalidTransition(
            f"job {info.submission_id!r} is {info.status.value}; {type(event).__name__} applies only to {status.value}"
        )


def can_delete(info: JobInfo) -> bool:
    """Only finished jobs are deleted (stop a running one first)."""
    return info.status.is_terminal()
