"""Who writes a trial's files (``params.json``, ``result.json``, ``progress.csv``, events).

A trial actor on the driver's node writes its own trials' files, in its own process: the
driver's loop (and its GIL) no longer pays for them, and the writing overlaps the
searcher's next suggestion. Each result is written as the trainable reports it; the driver
tells the actor how many of a run's results it accepted (``stop``'s ``accepted``, or a trim
that rides on the actor's next call) so that results which ran ahead of a stop decision
are cut from the files again. An actor on another node writes nothing: its replies say so,
and the driver's own :class:`TrialLogger` writes that trial's files, as before.

Before an actor is killed, and at the experiment's end, the driver has it flush what it
has queued, so the files are complete when ``fit`` returns. A trial actor that dies loses
the results it had not written yet (at most its last few milliseconds of reports).

:class:`TrialSlot` is the driver's record of one trial actor, the files' part included.
"""

from __future__ import annotations

import logging
from typing import Any

import distcore
from distcore.tune._internal.loggers import TrialLogger
from distcore.tune._internal.trial import Trial

logger = logging.getLogger("distcore.tune")

FLUSH_TIMEOUT_S = 10.0


class TrialSlot:
    """A trial actor and what it holds."""

    def __init__(self, actor: Any, key: Any, resources: dict[str, float], pg: Any = None) -> None:
        self.actor = actor
        self.key = key
        self.resources = resources
        self.pg = pg
        self.trial: Trial | None = None
        self.has_trainable = False
        self.prepare_ref: Any = None
        # an inline trial: its start call (replies when the trial ends), when it was sent, the
        # poll beside it, and a start reply that came while that poll was out (handled after it)
        self.run_ref: Any = None
        self.run_since = 0.0
        self.poll_ref: Any = None
        self.run_reply: dict[str, Any] | None = None
        # trial files (see trial_files): whether the actor may hold writes not yet on disk,
        # whether it writes them at all (None: no reply yet), the run's results the driver took,
        # a trim for its next call, params.json to write
        self.unflushed = False
        self.files_remote: bool | None = None
        self.accepted = 0
        self.pending_trim: list[Any] | None = None
        self.params_pending = False


class TrialFiles:
    """The driver's side of the split (one per experiment)."""

    def __init__(self, trial_logger: TrialLogger) -> None:
        self.logger = trial_logger
        self.node_id: str | None = None
        # trials whose files the driver's writer has (or had) queued writes for: a run on a
        # local actor waits for them first, so two writers never append at once
        self._driver_wrote: set[str] = set()

    def bind_node(self) -> None:
        """Learn the driver's node (actors there write their own trials' files)."""
        try:
            self.node_id = distcore.get_runtime_context().get_node_id()
        except Exception:  # no node to compare with: the driver writes every file
            self.node_id = None

    def run_spec(self, slot: TrialSlot, trial: Trial, write_params: bool) -> dict[str, Any] | None:
        """The ``files`` entry of a run's start spec; None when the driver writes them."""
        slot.accepted = 0
        if self.node_id is None or slot.files_remote is False:
            if write_params:
                self.by_driver_start(trial)
            return None
        if trial.trial_id in self._driver_wrote:
            self.logger.on_trial_end(trial)
            self.logger.flush()
            self._driver_wrote.discard(trial.trial_id)
        slot.params_pending = write_params
        trim, slot.pending_trim = slot.pending_trim, None
        return {"node": self.node_id, "params": write_params, "tb": self.logger.tensorboard, "trim": trim}

    def by_driver_start(self, trial: Trial) -> None:
        """The driver writes ``params.json`` (a trial's first run elsewhere, a PBT exploit)."""
        self._driver_wrote.add(trial.trial_id)
        self.logger.on_trial_start(trial)

    def on_reply(self, slot: TrialSlot, trial: Trial, response: dict[str, Any]) -> None:
        """Any reply of a run's actor: learn whether it writes the files (its first reply)."""
        if "files" not in response:
            return
        remote = bool(response["files"])
        if slot.files_remote is None:
            slot.files_remote = remote
        if not remote and slot.params_pending:
            slot.params_pending = False
            self.by_driver_start(trial)

    def on_accepted(self, slot: TrialSlot, trial: Trial, response: dict[str, Any], accepted: list[dict[str, Any]],
                    all_taken: bool) -> None:
        """The driver took ``accepted`` of a reply's results (``all_taken``: and dropped none)."""
        slot.accepted += len(accepted)
        if response.get("files"):
            if not all_taken:  # no stop carries the count: it rides on the actor's next call
                slot.pending_trim = [trial.trial_id, slot.accepted]
        elif accepted:
            self._driver_wrote.add(trial.trial_id)
            self.logger.on_results(trial, accepted)

    def end(self, trial: Trial) -> None:
        """A trial's run is over: the driver's writer closes its files, if it has them."""
        if trial.trial_id in self._driver_wrote:
            self.logger.on_trial_end(trial)

    def flush_actors(self, slots: list[TrialSlot], timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Before these slots' actors are killed: what they have queued reaches the disk (all
        asked at once, waited for together, ``timeout`` in all)."""
        refs = []
        for slot in slots:
            if slot.files_remote is False or not slot.unflushed:
                continue
            refs.append(slot.actor.flush_files.remote(slot.pending_trim, timeout))
            slot.pending_trim, slot.unflushed = None, False
        if not refs:
            return
        try:
            distcore.wait(refs, num_returns=len(refs), timeout=timeout + 1)
        except Exception as error:  # dead or stuck actors: their last results may be missing
            logger.debug("tune: flushing trial actors' files failed: %s", error)


__all__ = ["TrialFiles", "TrialSlot"]
