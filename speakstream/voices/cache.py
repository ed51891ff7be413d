"""Speech already made, kept in memory: the same words, in the same voice, at the same rate, are
synthesized once.

Replies often begin alike ("Sure, here are", "The capital of France is"), and the app says some
lines itself (the note read in place of a code block). A chunk found here is handed out whole at
once, with no wait for the voice and no core taken; the reply then treats it exactly as fresh
speech (level, fades, sample rate are set after), so it joins its neighbours the same way.

The key is the voice, what makes it (engine, version, model file), the speaking rate and the
exact text spoken; the samples are the voice's own, before anything the reply does to them. An
LRU bounded in bytes (``SPEAKSTREAM_VOICE_CACHE_MB``); the counts go to ``/metrics``. Its
start-up fill (:meth:`SpeechCache.fill`) speaks what replies most often begin with.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from speakstream.metrics import Metrics
from speakstream.voices.base import Voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechKey:
    voice: str
    engine: str
    rate: float
    text: str


class SpeechCache:
    """Thread-safe; shared by all replies. ``max_bytes`` 0 keeps nothing (every chunk a miss);
    hits and misses are counted in ``metrics`` where given."""

    def __init__(self, max_bytes: int, metrics: Metrics | None = None) -> None:
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.bytes = 0
        self._items: OrderedDict[SpeechKey, tuple[np.ndarray, int]] = OrderedDict()  # samples, start's size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def speak(
        self,
        voice: Voice,
        text: str,
        speaking_rate: float = 1.0,
        while_speaking: AbstractContextManager[int] | None = None,
        lead: Callable[[np.ndarray], None] | None = None,
    ) -> tuple[np.ndarray, bool]:
        """``voice.synthesize``'s answer (see there), and whether it was kept from before. Kept
        speech is read-only and comes at once, in the pieces it first came in: its start to
        ``lead`` where it had one and one is asked for, so it is treated exactly as it was."""
        if not voice.shared:  # a user's own voice: its speech is theirs alone, never kept
            return voice.synthesize(text, speaking_rate, while_speaking, lead), False
        key = SpeechKey(voice.key, voice.engine, round(speaking_rate, 4), text)
        with self._lock:
            kept = self._items.get(key)
            if kept is not None:
                self._items.move_to_end(key)
        if self.metrics is not None:
            (self.metrics.voice_cache_hits if kept is not None else self.metrics.voice_cache_misses).inc()
        if kept is not None:
            samples, start = kept
            if lead is None or start == 0:
                return samples, True
            lead(samples[:start])
            return samples[start:], True
        started: list[np.ndarray] = []

        def keep(samples: np.ndarray) -> None:
            started.append(samples)
            if lead is not None:
                lead(samples)

        rest = voice.synthesize(text, speaking_rate, while_speaking, keep if lead is not None else None)
        self._put(key, [*started, rest])
        return rest, False

    def fill(
        self,
        voice: Voice,
        texts: Iterable[str],
        speaking_rate: float = 1.0,
        while_speaking: Callable[[], AbstractContextManager[int]] | None = None,
    ) -> int:
        """Speak each of ``texts`` not kept yet, as a reply's first chunk (its start apart where the
        voice makes one), each within a fresh ``while_speaking()``, the core a reply's voice would
        take; how many were made. A text the voice fails on is skipped (logged): the fill is an
        optimisation, never a reason to stop."""
        made = 0
        for text in texts if self.max_bytes > 0 else ():
            key = SpeechKey(voice.key, voice.engine, round(speaking_rate, 4), text)
            with self._lock:
                if key in self._items:
                    continue
            started: list[np.ndarray] = []
            try:
                cores = while_speaking() if while_speaking is not None else None
                rest = voice.synthesize(text, speaking_rate, cores, started.append)
            except Exception:  # any engine's error (logged): that text is simply not kept
                log.warning("Voice %s could not say a line for the cache; skipped", voice.key, exc_info=True)
                continue
            self._put(key, [*started, rest])
            made += 1
        return made

    def _put(self, key: SpeechKey, pieces: list[np.ndarray]) -> None:
        """Keep the speech that came in ``pieces`` (a start given early, if any, then the rest)."""
        samples = np.concatenate(pieces) if len(pieces) > 1 else pieces[0].copy()
        samples.flags.writeable = False  # handed to every reply that says it: none may change it
        start = sum(piece.size for piece in pieces[:-1])
        size = samples.nbytes + len(key.text.encode())
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (samples, start)
            self.bytes += size
            while self.bytes > self.max_bytes:
                old_key, (old, _) = self._items.popitem(last=False)
                self.bytes -= old.nbytes + len(old_key.text.encode())
