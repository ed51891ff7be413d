"""Per-session fairness: how many messages a session may send in a sliding window."""

from __future__ import annotations

import time
from collections import deque


class RateLimiter:
    """Allows ``limit`` messages per ``window`` seconds; one per browser session."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()

    def check(self, now: float | None = None) -> float:
        """0 when a message may be sent now (and counts it), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        if self.limit > 0 and len(self._sent) >= self.limit:
            return self.window - (now - self._sent[0])
        self._sent.append(now)
        return 0.0
