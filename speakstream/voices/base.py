"""The one small interface every voice engine implements."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np


class VoiceLoadError(RuntimeError):
    """A voice could not be loaded; the message says why, in words a user can act on."""


class Voice(ABC):
    """A loaded voice, shared by all sessions: ``synthesize`` gives 16-bit mono samples.

    Engines are not promised to be re-entrant, so calls are serialised per voice (but for a
    ``remote`` one: a server elsewhere takes requests at once); different voices run in parallel.
    """

    key: str
    label: str
    sample_rate: int
    language = "en"  # the language it speaks, two letters
    engine = ""  # what makes its speech (engine, version, model file): kept speech never crosses them
    most_threads = 1  # threads its synthesis gains from (more on a core budget's spare cores)
    remote = False  # it speaks on another machine: calls run at once, on no core of this one
    shared = True  # False: one user's own voice, whose speech is never kept for anyone
    speaking_rate_works = True  # False: it speaks at its own pace whatever the rate asked for

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def synthesize(
        self,
        text: str,
        speaking_rate: float = 1.0,
        while_speaking: AbstractContextManager[int] | None = None,
        lead: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Samples for ``text`` (int16, mono, at ``sample_rate``); empty when there is nothing to say.

        ``speaking_rate`` above 1 speaks faster; both engines take its inverse as length scale.
        ``while_speaking`` is entered only once this voice is free (a reply waiting for another
        reply's synthesis holds no core meanwhile) and gives the threads to synthesize on. A
        voice that can finish the start of its speech before the rest hands that start to
        ``lead`` as soon as it has it and returns only the rest; the others ignore ``lead`` and
        return everything.
        """
        if not any(ch.isalnum() for ch in text):
            return np.zeros(0, dtype=np.int16)
        early = None if lead is None else (lambda samples: lead(_int16(samples)))
        if self.remote:
            return _int16(self._synthesize(text, 1.0 / speaking_rate, early))
        with self._lock, while_speaking or nullcontext(1) as threads:
            return _int16(self._synthesize(text, 1.0 / speaking_rate, early, threads))

    @abstractmethod
    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        """Float samples in [-1, 1] for non-empty ``text`` (after those given to ``lead``, if it gives
        any), on ``threads`` threads where it can."""


def _int16(samples: np.ndarray) -> np.ndarray:
    flat = np.asarray(samples, dtype=np.float32).reshape(-1)
    return (np.clip(flat, -1.0, 1.0) * 32767).astype(np.int16)
