"""Work handed to a passing thread comes back with its result or its error."""

from __future__ import annotations

import threading

import pytest

from speakstream.torch_threads import in_passing_thread


def test_the_result_comes_back_from_another_thread_that_then_ends() -> None:
    ran_on: list[threading.Thread] = []
    assert in_passing_thread(lambda: ran_on.append(threading.current_thread()) or 42) == 42
    assert ran_on[0] is not threading.current_thread() and not ran_on[0].is_alive()


def test_an_error_is_raised_on_the_callers_thread() -> None:
    def fail() -> None:
        raise ValueError("no weights here")

    with pytest.raises(ValueError, match="no weights here"):
        in_passing_thread(fail)
