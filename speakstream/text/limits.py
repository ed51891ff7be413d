"""Fairness: how many messages one client may send in a sliding window.

Clients are told apart by their network address (a page reload or a new browser tab is
the same client), and at most ``MAX_CLIENTS`` are remembered, the least recently seen
forgotten first, so a flood of addresses cannot grow memory without bound.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_CLIENTS = 10_000


class RateLimiter:
    """Allows ``limit`` messages per ``window`` seconds (0: no limit), for one client."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()

    def check(self, now: float | None = None) -> float:
        """0 when a message may be sent now (and counts it), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        if wait := self.waiting(now):
            return wait
        self._sent.append(now)
        return 0.0

    def waiting(self, now: float | None = None) -> float:
        """The seconds to wait before a message may be sent (0: now); counts nothing."""
        now = time.monotonic() if now is None else now
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if self.limit > 0 and len(self._sent) >= self.limit:
            return self.window - (now - self._sent[0])
        return 0.0


class RateLimits:
    """One :class:`RateLimiter` per client address, shared by every session of that client."""

    def __init__(self, limit: int, window: float, max_clients: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._clients: OrderedDict[str, RateLimiter] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may send a message now (and counts it), else the seconds to wait."""
        with self._lock:
            return self._limiter(client).check(now)

    def waiting(self, client: str, now: float | None = None) -> float:
        """The seconds ``client`` must wait before its next message (0: none); counts nothing.

        Checked before the costly part of a message (recognizing speech), counted once it is admitted.
        """
        with self._lock:
            return self._limiter(client).waiting(now)

    def _limiter(self, client: str) -> RateLimiter:
        """``client``'s limiter, now the most recently seen (call with the lock held)."""
        limiter = self._clients.pop(client, None) or RateLimiter(self.limit, self.window)
        self._clients[client] = limiter
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return limiter
