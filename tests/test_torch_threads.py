"""Work handed to a passing thread comes back with its result or its error."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from speakstream.torch_threads import CoreShare, in_passing_thread

ROOT = Path(__file__).resolve().parents[1]


def test_the_result_comes_back_from_another_thread_that_then_ends() -> None:
    ran_on: list[threading.Thread] = []
    assert in_passing_thread(lambda: ran_on.append(threading.current_thread()) or 42) == 42
    assert ran_on[0] is not threading.current_thread() and not ran_on[0].is_alive()


def test_an_error_is_raised_on_the_callers_thread() -> None:
    def fail() -> None:
        raise ValueError("no weights here")

    with pytest.raises(ValueError, match="no weights here"):
        in_passing_thread(fail)


def own_openmp_threads() -> int:
    """The calling thread's own OpenMP thread count, as OpenMP itself reports it."""
    info = torch.__config__.parallel_info()
    return int(info.split("omp_get_max_threads() :")[1].split()[0])


def test_a_model_thread_gives_the_voice_a_core_while_it_speaks_and_takes_it_back() -> None:
    cores = CoreShare(2)

    def model_thread() -> list[int]:
        seen = []
        cores.follow()
        seen.append(own_openmp_threads())
        with cores.voice_speaking(), cores.voice_speaking():  # two replies speaking at once
            cores.follow()
            seen.append(own_openmp_threads())
        cores.follow()
        seen.append(own_openmp_threads())
        return seen

    assert in_passing_thread(model_thread) == [2, 1, 2]


def test_without_sharing_the_model_keeps_its_threads() -> None:
    cores, single = CoreShare(2, share=False), CoreShare(1)
    with cores.voice_speaking(), single.voice_speaking():
        assert cores.wanted == 2
        assert single.wanted == 1  # never zero


PROBE = """
import os, threading
import torch
from speakstream.model import LanguageModel, Sampling
from speakstream.settings import Settings
model = LanguageModel(Settings()).load()
model.perplexity("The Moon takes about twenty-seven days to go around the Earth.")
"".join(model.stream_reply([{"role": "user", "content": "Hi"}], threading.Event(), Sampling(0.2, 0.9, 1.15, 8)))
before = set(os.listdir("/proc/self/task"))
torch.set_num_threads(2)
torch.ones(1 << 22).exp_().sum()  # a parallel region on the main thread: its team starts now, if not before
print(len(set(os.listdir("/proc/self/task")) - before))
"""


@pytest.mark.slow
def test_loading_and_using_the_model_leave_the_main_thread_without_worker_threads() -> None:
    """A thread that runs torch keeps OpenMP workers while it lives; the main thread lives forever.

    OpenMP starts a thread's workers at its first parallel region and keeps them: if loading,
    scoring or replying had run torch on the main thread, a parallel region there now would
    find its workers already running and start none.
    """
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, cwd=ROOT, check=True
    )
    started = int(result.stdout.split()[-1])
    assert started > 0, result.stderr[-2000:]
