"""experiment_state.json: finished trials' JSON is reused between saves, yet every save
says what each trial is now (no cluster)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from distcore.tune._internal import experiment_state
from distcore.tune._internal.trial import RUNNING, TERMINATED, Trial


class _NoState:
    def save(self, path: str) -> None:
        pass


def _controller(tmp_path, trials):
    controller = SimpleNamespace(
        experiment_name="exp", trainable_name="fn", num_suggested=len(trials), searcher_finished=False,
        interrupted=False, trials=trials, experiment_path=str(tmp_path), searcher=_NoState(),
        scheduler=_NoState(), state_cache={}, stopping=set(),
        is_busy=lambda trial: trial.trial_id in controller.stopping)
    return controller


def _saved(tmp_path) -> dict:
    with open(os.path.join(tmp_path, experiment_state.STATE_FILE)) as f:
        return json.load(f)


def test_each_save_shows_the_trials_as_they_are_now(tmp_path) -> None:
    done = Trial("t0", {"x": 1}, 0, str(tmp_path), "fn", None)
    live = Trial("t1", {"x": 2}, 1, str(tmp_path), "fn", None)
    done.status, live.status = TERMINATED, RUNNING
    done.last_result, live.last_result = {"score": 1.0}, {"score": 2.0}
    done.num_results = live.num_results = 1
    controller = _controller(tmp_path, [done, live])

    experiment_state.save(controller)
    first = _saved(tmp_path)
    assert [t["last_result"]["score"] for t in first["trials"]] == [1.0, 2.0]
    assert first["name"] == "exp" and first["num_suggested"] == 2
    assert set(controller.state_cache) == {"t0"}  # only the finished trial is kept

    live.last_result, live.num_results = {"score": 3.0}, 2  # a running trial changes freely
    done.checkpoint_path = os.path.join(done.local_path, "checkpoint_000000")
    done.checkpoint_history.append((done.checkpoint_path, {}))  # a final checkpoint lands late
    experiment_state.save(controller)
    second = _saved(tmp_path)
    assert second["trials"][1]["last_result"]["score"] == 3.0
    assert second["trials"][0]["checkpoint_path"] == "checkpoint_000000"

    controller.stopping.add("t0")  # still being stopped: not cached, always written afresh
    done.metric_analysis = {"score": {"max": 5.0}}
    experiment_state.save(controller)
    assert _saved(tmp_path)["trials"][0]["metric_analysis"] == {"score": {"max": 5.0}}
