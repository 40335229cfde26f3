"""Hints appended to task errors: a module missing on the worker."""

from __future__ import annotations

from distcore._private.core_worker.error_hints import hint_for, missing_module


def test_a_missing_module_gets_the_runtime_env_advice():
    try:
        import distcore_no_such_module  # noqa: F401
    except ModuleNotFoundError as exc:
        error = exc
    assert missing_module(error) == "distcore_no_such_module"
    hint = hint_for(error)
    assert "'distcore_no_such_module' is missing on the worker" in hint
    assert "py_modules" in hint and "working_dir" in hint


def test_the_module_is_found_through_the_exception_chain():
    try:
        try:
            import distcore_no_such_module.sub  # noqa: F401
        except ImportError as inner:
            raise RuntimeError("plugin failed to load") from inner
    except RuntimeError as exc:
        assert missing_module(exc) == "distcore_no_such_module"


def test_other_errors_get_no_hint():
    assert hint_for(ValueError("bad")) == ""
