"""The model's work on the start of a prompt, kept so the next reply does not redo it.

Every prompt starts the same way (the chat template's system turn), and every turn of a
conversation starts with the whole conversation before it. Before the first token the
model must read the entire prompt, which for a long conversation takes seconds. This cache
keeps the attention keys and values of prompt beginnings (everything before the newest user
message) and hands out copies, so a reply only reads what is new. It is bounded by the number of tokens it holds, least
recently used first out.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


class PromptCache:
    """Key/value caches of prompt beginnings, looked up by the longest matching start."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.hits = 0
        self._entries: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        return sum(len(key) for key in self._entries)

    def longest(self, ids: Sequence[int]) -> tuple[int, Any]:
        """The longest cached start of ``ids``: its length and a private copy of its cache (0, None if none)."""
        with self._lock:
            best = max((key for key in self._entries if tuple(ids[: len(key)]) == key), key=len, default=None)
            if best is None:
                return 0, None
            self._entries.move_to_end(best)
            self.hits += 1
            return len(best), copy.deepcopy(self._entries[best])

    def store(self, ids: Sequence[int], cache: Any) -> None:
        """Keep (a copy of) the cache of ``ids``; the least recently used go once over the bound."""
        key = tuple(ids)
        if not key or len(key) > self.max_tokens:
            return
        kept = copy.deepcopy(cache)
        with self._lock:
            self._entries[key] = kept
            self._entries.move_to_end(key)
            while self.tokens > self.max_tokens:
                self._entries.popitem(last=False)
