"""Where torch does its CPU work, and on how many threads.

Only on threads that end, never on one that lives on. torch's CPU kernels run on OpenMP
(GNU libgomp). Every thread that runs a parallel kernel keeps a team of worker threads for
as long as it lives. Once the process holds more of those workers than the machine has
cores, libgomp stops letting idle workers spin and puts them to sleep, and waking them
costs more than the small matrix products of token-by-token decoding take (decoding slowed
to well under its speed when the main thread had run a model load). Replies already
generate on threads of their own; every other
entry point that runs torch (loading a model, scoring text, Coqui synthesis) hands its
work to a thread that then ends, so the main thread and the long-lived server threads
never hold a team (tests/test_torch_threads.py checks it). How many threads each model uses
while others generate and voices speak: :class:`CoreBudget`.
"""

from __future__ import annotations

import os
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


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """The calling thread's torch work runs on one thread while this lasts (then on as many as before)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class CoreBudget:
    """The machine's cores, shared by every reply's model thread and every voice speaking, so that
    together they never run more threads than there are cores.

    A voice that is about to synthesize takes a core of its own; model threads give cores up at
    their next token (each calls :meth:`follow` between tokens) and share the rest fairly. When
    voices hold every core, model threads wait at their next token until one is free. A model
    thread that is pausing (:meth:`resting`) holds no core. torch's OpenMP thread count belongs
    to each thread (another thread setting it changes nothing for a thread already running),
    so each model thread sets its own in :meth:`follow`. No model thread runs more than
    ``per_model`` threads (``SPEAKSTREAM_TORCH_THREADS``: small models decode no faster on more), so on a big
    machine several replies run side by side without sharing at all. With ``share=False``
    model threads always run ``per_model`` threads and voices never wait (the behaviour
    before sharing). A page on this machine that shows a reply as it streams (the local link)
    renders every token on these same cores and cannot wait its turn: while one does, no model
    thread runs on more threads than the cores it leaves (:meth:`page_showing`).
    """

    def __init__(self, cores: int, per_model: int | None = None, share: bool = True) -> None:
        self.cores = max(1, cores)
        self.per_model = max(1, per_model or self.cores)
        self.share = share
        self._speaking = 0
        self._waiting_voices = 0
        self._pages = 0
        self._models: dict[int, int] = {}  # model thread -> threads it runs with now
        self._changed = threading.Condition()
        self._applied = threading.local()

    @contextmanager
    def generating(self) -> Iterator[None]:
        """The calling thread runs a model for as long as this lasts."""
        me = threading.get_ident()
        with self._changed:
            self._models[me] = 0
        try:
            yield
        finally:
            with self._changed:
                self._models.pop(me, None)
                self._changed.notify_all()

    def _share(self, me: int) -> int:
        """Threads model thread ``me`` may run now: the cores no voice holds or waits for, shared
        fairly among the model threads, at most ``per_model`` (call with the lock held).

        A core that does not divide evenly goes to the reply that started first, so it ends first.
        """
        if not self.share:
            return self.per_model
        most = min(self.per_model, max(1, self.cores - self._pages))
        free = self.cores - self._speaking - self._waiting_voices
        if free <= 0 or me not in self._models:
            return min(max(free, 0), most)
        models = list(self._models)  # in the order they started
        base, extra = divmod(free, len(models))
        return min(most, base + (1 if models.index(me) < extra else 0))

    def _room(self, me: int) -> int:
        """Model thread ``me``'s share, as far as the others have already given cores up (lock held)."""
        if not self.share:
            return self.per_model
        others = sum(threads for thread, threads in self._models.items() if thread != me)
        return min(self._share(me), self.cores - self._speaking - others)

    def follow(self) -> None:
        """Between tokens: wait while no core is left for this model thread, then run on its share."""
        me = threading.get_ident()
        with self._changed:
            if me not in self._models:  # a one-off call (warm-up, scoring): never waits, never zero threads
                wanted = max(1, self._share(me))
            else:
                self._models[me] = 0
                self._changed.notify_all()
                self._changed.wait_for(lambda: self._room(me) >= 1)
                wanted = self._room(me)
                self._models[me] = wanted
        if getattr(self._applied, "threads", None) != wanted:
            import torch

            torch.set_num_threads(wanted)
            self._applied.threads = wanted

    @contextmanager
    def resting(self) -> Iterator[None]:
        """The calling model thread holds no core while this lasts (it is pausing for a voice)."""
        me = threading.get_ident()
        with self._changed:
            if me in self._models:
                self._models[me] = 0
                self._changed.notify_all()
        yield

    @contextmanager
    def page_showing(self) -> Iterator[None]:
        """A browser on this machine renders a reply while this lasts: model threads leave it a core
        (at their next token). Spinning OpenMP workers that share a core with the browser wait on
        each other at every kernel, which costs more than the second thread gains."""
        with self._changed:
            self._pages += 1
        try:
            yield
        finally:
            with self._changed:
                self._pages -= 1
                self._changed.notify_all()

    @contextmanager
    def voice_speaking(self, threads: int = 1) -> Iterator[int]:
        """A voice synthesizes on up to ``threads`` threads; yields how many it got.

        It waits for a core of its own (models give one up at their next token). It takes more
        only while no model thread is writing and no page shows a reply on this machine, so a
        voice never slows a reply being written; a model thread that starts meanwhile waits, at
        its first token, for this synthesis to end.
        """
        with self._changed:
            if self.share:
                self._waiting_voices += 1
                self._changed.notify_all()
                self._changed.wait_for(lambda: sum(self._models.values()) + self._speaking < self.cores)
                self._waiting_voices -= 1
            granted = 1
            if self.share and not self._models:
                granted = max(1, min(threads, self.cores - self._speaking - self._pages))
            self._speaking += granted
        try:
            yield granted
        finally:
            with self._changed:
                self._speaking -= granted
                self._changed.notify_all()

    @property
    def voices_waiting(self) -> int:
        """Voices waiting for a core (each model gives one up at its next token)."""
        with self._changed:
            return self._waiting_voices

    @property
    def pages_showing(self) -> int:
        """Replies streaming to a page on this machine now."""
        with self._changed:
            return self._pages

    @property
    def voice_threads(self) -> int:
        """Threads the voices synthesizing now hold."""
        with self._changed:
            return self._speaking

    @property
    def in_use(self) -> int:
        """Threads the model threads and voices hold now (never more than ``cores`` when sharing)."""
        with self._changed:
            return sum(self._models.values()) + self._speaking
