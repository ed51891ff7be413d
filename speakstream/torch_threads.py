"""Where torch does its CPU work, and on how many threads.

Only on threads that end, never on one that lives on. torch's CPU kernels run on OpenMP
(GNU libgomp). Every thread that runs a parallel kernel keeps a team of worker threads for
as long as it lives. Once the process holds more of those workers than the machine has
cores, libgomp stops letting idle workers spin and puts them to sleep, and waking them
costs more than the small matrix products of token-by-token decoding take: measured here,
a 1536x576 float32 product took 138 us on a fresh thread and 230 us on a thread started
after the main thread had run a model load (SmolLM2 decoding: 26 -> 16 tokens/s; with
4-bit weights 47 -> 21). Replies already generate on threads of their own; every other
entry point that runs torch (loading a model, scoring text, Coqui synthesis) hands its
work to a thread that then ends, so the main thread and the long-lived server threads
never hold a team (tests/test_torch_threads.py checks it). How many threads a model uses
while a voice speaks: :class:`CoreShare`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def in_passing_thread(work: Callable[[], T], name: str = "speakstream-load") -> T:
    """Run ``work`` on a new thread, wait for it, and return its result (or raise its error)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


class CoreShare:
    """While a voice synthesizes, model threads run torch on one thread fewer, so the model and
    the voice each have a core instead of fighting over both.

    Measured here (2 cores, SmolLM2 with 4-bit weights, Piper on 1 thread): decoding alone
    50 tokens/s on 2 threads, 37 on 1. With Piper kept busy, 2-4 tokens/s on 2 threads
    (every parallel step waits for a thread the voice has pushed off its core) against 30-38
    on 1; with Piper speaking in bursts, 17-19 against 28-31. In replies (`bench speed`):
    while the voice speaks, 23-25 -> 35 tokens/s, and a spoken reply takes 0.84 of the
    sequential time instead of 1.04. torch's OpenMP thread count belongs to each thread
    (another thread setting it changes nothing for a thread already running), so a model
    thread calls :meth:`follow` between tokens to take the count wanted now.
    """

    def __init__(self, threads: int, share: bool = True) -> None:
        self.threads = threads
        self.share = share
        self._speaking = 0
        self._lock = threading.Lock()
        self._applied = threading.local()

    @property
    def wanted(self) -> int:
        """Threads a model thread should use now: one fewer while any voice synthesizes (if sharing)."""
        return max(1, self.threads - 1) if self.share and self._speaking else self.threads

    @contextmanager
    def voice_speaking(self) -> Iterator[None]:
        with self._lock:
            self._speaking += 1
        try:
            yield
        finally:
            with self._lock:
                self._speaking -= 1

    def follow(self) -> None:
        """Set the calling thread's torch thread count to :attr:`wanted` (only when it changed)."""
        wanted = self.wanted
        if getattr(self._applied, "threads", None) != wanted:
            import torch

            torch.set_num_threads(wanted)
            self._applied.threads = wanted
