"""Replies kept whole, text and speech, and given again at once to the same request where that is
honest: the page's examples with the operator's own settings (what most first-time visitors
click), and, where the operator turns it on, any request whose reply is fixed by it (a seed set,
or temperature 0).

The key is everything that shapes a reply: the model, the whole conversation (system prompt,
history, message), the sampling settings and seed, the voice and the speaking rate. Only a reply
that ran to its end with every chunk spoken is kept; Retry always asks the model afresh. An LRU
of ``MOST_REPLIES``; hits and misses are counted in ``/metrics``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speakstream.llm.model import ChatModel, Message, Sampling
from speakstream.metrics import Metrics

MOST_REPLIES = 64  # a reply keeps its speech (about 2.6 MB a minute): at most some 100 MB


@dataclass(frozen=True)
class ReplyKey:
    model: str
    messages: tuple[tuple[str, str], ...]
    sampling: Sampling
    voice: str
    speaking_rate: float


@dataclass(frozen=True)
class KeptReply:
    text: str
    segments: tuple[tuple[np.ndarray, str], ...]  # each piece of speech and the text it speaks


def reply_key(
    model: ChatModel, messages: Sequence[Message], sampling: Sampling, voice: str, speaking_rate: float
) -> ReplyKey:
    said = tuple((message["role"], message["content"]) for message in messages)
    return ReplyKey(model.name, said, sampling, voice, round(speaking_rate, 4))


class ReplyCache:
    """Thread-safe; shared by every session."""

    def __init__(self, most: int = MOST_REPLIES, metrics: Metrics | None = None) -> None:
        self.most = most
        self.metrics = metrics
        self._kept: OrderedDict[ReplyKey, KeptReply] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: ReplyKey) -> KeptReply | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
        if self.metrics is not None:
            (self.metrics.reply_cache_hits if kept is not None else self.metrics.reply_cache_misses).inc()
        return kept

    def keep(self, key: ReplyKey, reply: KeptReply) -> None:
        for samples, _ in reply.segments:
            samples.flags.writeable = False  # handed to every request that asks again
        with self._lock:
            self._kept[key] = reply
            self._kept.move_to_end(key)
            while len(self._kept) > self.most:
                self._kept.popitem(last=False)
