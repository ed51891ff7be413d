"""Work handed to a passing thread comes back with its result or its error."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from speakstream.torch_threads import CoreBudget, in_passing_thread

from support import WAIT_SECONDS, own_openmp_threads, wait_until

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


class ModelThread(threading.Thread):
    """A model thread under test: registered with the budget, it calls ``follow()`` (one token)
    each time the test asks it to, and notes its own OpenMP thread count after each."""

    def __init__(self, cores: CoreBudget) -> None:
        super().__init__(daemon=True)
        self.cores = cores
        self.tokens: queue.Queue[bool] = queue.Queue()
        self.counts: queue.Queue[int] = queue.Queue()
        self.registered = threading.Event()

    def start(self) -> None:
        """Start, and return once the budget counts this thread as a model thread."""
        super().start()
        assert self.registered.wait(WAIT_SECONDS)

    def run(self) -> None:
        with self.cores.generating():
            self.registered.set()
            while self.tokens.get():
                self.cores.follow()
                self.counts.put(own_openmp_threads())

    def token(self) -> int:
        """Write one token; returns the threads it ran with."""
        self.tokens.put(True)
        return self.counts.get(timeout=WAIT_SECONDS)

    def finish(self) -> None:
        self.tokens.put(False)
        self.join(WAIT_SECONDS)


def speak_in_background(cores: CoreBudget, done: threading.Event) -> threading.Event:
    """A voice that takes a core (once one is free) and holds it until ``done``; returns an event set as it speaks."""
    speaking = threading.Event()

    def voice() -> None:
        with cores.voice_speaking():
            speaking.set()
            done.wait(WAIT_SECONDS)

    threading.Thread(target=voice, daemon=True).start()
    return speaking


def test_a_model_alone_uses_every_core_and_gives_one_to_a_voice_at_its_next_token() -> None:
    cores = CoreBudget(2)
    model = ModelThread(cores)
    model.start()
    assert model.token() == 2
    done = threading.Event()
    speaking = speak_in_background(cores, done)
    assert wait_until(lambda: cores.voices_waiting == 1) and not speaking.is_set(), "it waits for a core"
    assert model.token() == 1
    assert speaking.wait(WAIT_SECONDS) and cores.in_use == 2
    done.set()
    assert wait_until(lambda: cores.in_use == 1)
    assert model.token() == 2, "and takes it back once the voice is done"
    model.finish()


def test_two_replies_share_the_cores_and_wait_at_their_next_token_while_voices_hold_them_all() -> None:
    cores = CoreBudget(2)
    first, second = ModelThread(cores), ModelThread(cores)
    first.start(), second.start()
    assert {first.token(), second.token()} == {1}
    done = threading.Event()
    voices = [speak_in_background(cores, done), speak_in_background(cores, done)]
    tokens: queue.Queue[int] = queue.Queue()
    for model in (first, second):
        threading.Thread(target=lambda m=model: tokens.put(m.token()), daemon=True).start()
    assert voices[0].wait(WAIT_SECONDS) and voices[1].wait(WAIT_SECONDS)
    assert cores.in_use == 2 and tokens.empty(), "both voices speak; both models wait at their next token"
    done.set()
    assert [tokens.get(timeout=WAIT_SECONDS), tokens.get(timeout=WAIT_SECONDS)] == [1, 1]
    first.finish(), second.finish()


def test_each_reply_runs_on_at_most_its_own_threads_and_a_spare_core_goes_to_the_first_reply() -> None:
    cores = CoreBudget(5, per_model=2)
    first, second = ModelThread(cores), ModelThread(cores)
    first.start()
    assert first.token() == 2, "not all five: small models decode no faster on more"
    second.start()
    assert [second.token(), first.token()] == [2, 2]
    done = threading.Event()
    speaking = [speak_in_background(cores, done) for _ in range(2)]
    assert wait_until(lambda: cores.voices_waiting + cores.voice_threads == 2)
    assert [second.token(), first.token()] == [1, 2], "three cores left: the first reply ends first"
    assert all(voice.wait(WAIT_SECONDS) for voice in speaking) and cores.in_use == 5
    done.set()
    first.finish(), second.finish()


def test_a_model_leaves_a_core_to_a_browser_on_this_machine_without_ever_waiting_for_it() -> None:
    cores = CoreBudget(2)
    model = ModelThread(cores)
    model.start()
    assert model.token() == 2
    with cores.page_showing():
        assert model.token() == 1, "the page renders each token on the other core"
        done = threading.Event()
        assert speak_in_background(cores, done).wait(WAIT_SECONDS), "a voice still gets a core at once"
        assert model.token() == 1, "and the model still writes: a page never makes it wait"
        done.set()
        assert wait_until(lambda: cores.voice_threads == 0)
    assert model.token() == 2
    model.finish()
    big = CoreBudget(8, per_model=2)
    model = ModelThread(big)
    model.start()
    with big.page_showing():
        assert model.token() == 2, "cores to spare: the page costs the model nothing"
    model.finish()


def test_without_sharing_models_keep_every_core_and_voices_never_wait() -> None:
    cores = CoreBudget(2, share=False)
    model = ModelThread(cores)
    model.start()
    with cores.voice_speaking():
        assert model.token() == 2
    model.finish()


def test_a_one_off_call_never_waits_and_never_runs_on_zero_threads() -> None:
    cores = CoreBudget(1)
    with cores.voice_speaking():
        assert in_passing_thread(lambda: (cores.follow(), own_openmp_threads())[1]) == 1


def test_model_threads_and_voices_never_hold_more_than_the_cores() -> None:
    cores = CoreBudget(2)
    seen: list[int] = []

    def model() -> None:
        with cores.generating():
            for _ in range(200):
                cores.follow()
                seen.append(cores.in_use)

    def voice() -> None:
        for _ in range(50):
            with cores.voice_speaking():
                seen.append(cores.in_use)

    workers = [threading.Thread(target=work, daemon=True) for work in (model, model, model, voice, voice)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT_SECONDS)
    assert not any(worker.is_alive() for worker in workers), "nobody is left waiting"
    assert len(seen) == 3 * 200 + 2 * 50 and max(seen) <= 2


PROBE = """
import os, threading
import torch
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.settings import Settings
model = LanguageModel(Settings(cpu_kernels="torch")).load()
model.perplexity("The Moon takes about twenty-seven days to go around the Earth.")
"".join(model.stream_reply([{"role": "user", "content": "Hi"}], Sampling(0.2, 0.9, 1.15, 8)))
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


def test_a_voice_gets_the_spare_cores_it_asks_for_only_while_no_model_writes_and_no_page_shows() -> None:
    cores = CoreBudget(2)
    with cores.voice_speaking(2) as threads:
        assert threads == 2 and cores.voice_threads == 2
    with cores.voice_speaking(3) as threads:
        assert threads == 2, "never more than the cores"
    with cores.page_showing(), cores.voice_speaking(2) as threads:
        assert threads == 1, "the browser on this machine keeps its core"
    model = ModelThread(cores)
    model.start()
    with cores.voice_speaking(2) as threads:
        assert threads == 1, "a reply being written keeps its core"
        assert model.token() == 1
    model.finish()


def test_a_model_that_starts_while_a_voice_holds_every_core_waits_for_its_synthesis_to_end() -> None:
    cores = CoreBudget(2)
    done = threading.Event()
    holding = threading.Event()

    def voice() -> None:
        with cores.voice_speaking(2):
            holding.set()
            done.wait(WAIT_SECONDS)

    threading.Thread(target=voice, daemon=True).start()
    assert holding.wait(WAIT_SECONDS)
    model = ModelThread(cores)
    model.start()
    model.tokens.put(True)
    with pytest.raises(queue.Empty):
        model.counts.get(timeout=0.2)  # (order, not time: it cannot run while the voice holds both cores)
    done.set()
    assert model.counts.get(timeout=WAIT_SECONDS) == 2
    assert cores.in_use <= 2
    model.finish()
