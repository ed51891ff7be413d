"""Things loaded by name when a user picks them (language models, voices), each once however many ask.

One loader thread, so loads never compete with each other for the CPU and memory, and never
take a reply's place in the queue. A failed load answers with its reason for a while before
it is tried again, and only a few loads may wait at once, so a stream of picks from one
visitor cannot pile up work for everyone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
# A failed load answers with its reason for this long before it is tried again.
RETRY_AFTER_SECONDS = 60.0
# Loads that may be under way or waiting at once (one runs at a time).
MAX_WAITING_LOADS = 3


class LoadOnce(Generic[T]):
    """Runs ``load(key)`` on its own thread, at most once at a time per key.

    ``lock`` is the owner's lock: the owner calls :meth:`request` holding it, right after finding
    the key is not loaded, and ``load`` stores what it loaded under it, so no request can slip
    between "not loaded" and "loading".
    """

    def __init__(
        self,
        name: str,
        load: Callable[[str], T],
        lock: threading.Lock,
        *,
        too_many: Callable[[], Exception],
        remember: Callable[[BaseException], bool] = lambda error: True,
        retry_after: float = RETRY_AFTER_SECONDS,
        max_waiting: int = MAX_WAITING_LOADS,
    ) -> None:
        self._load = load
        self._lock = lock
        self.retry_after = retry_after
        self.max_waiting = max_waiting
        self._too_many = too_many
        self._remember = remember
        self._loading: dict[str, Future[T]] = {}
        self._failed: dict[str, tuple[float, Future[T]]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-loader")

    @property
    def loading(self) -> set[str]:
        """The keys being loaded or waiting to be (read with the owner's lock held)."""
        return set(self._loading)

    def request(self, key: str) -> Future[T]:
        """The load of ``key``: the one under way, a failure from moments ago, or a new one
        (refused with ``too_many()`` when ``max_waiting`` loads are already under way)."""
        now = time.monotonic()
        self._failed = {name: failed for name, failed in self._failed.items() if now - failed[0] < self.retry_after}
        if key in self._failed:
            return self._failed[key][1]
        if key not in self._loading:
            if len(self._loading) >= self.max_waiting:
                refused: Future[T] = Future()
                refused.set_exception(self._too_many())
                return refused
            self._loading[key] = self._executor.submit(self._run, key)
        return self._loading[key]

    def _run(self, key: str) -> T:
        try:
            value = self._load(key)
        except BaseException as error:
            with self._lock:
                load = self._loading.pop(key)
                if self._remember(error):
                    self._failed[key] = (time.monotonic(), load)
            raise
        with self._lock:
            self._loading.pop(key)
        return value
