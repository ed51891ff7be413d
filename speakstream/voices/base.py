"""The one small interface every voice engine implements."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np


class VoiceLoadError(RuntimeError):
    """A voice could not be loaded; the message says why, in words a user can act on."""


class Voice(ABC):
    """A loaded voice, shared by all sessions: ``synthesize`` gives 16-bit mono samples.

    Engines are not promised to be re-entrant, so calls are serialised per voice; different
    voices still run in parallel.
    """

    key: str
    label: str
    sample_rate: int
    language = "en"  # the language it speaks, two letters

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def synthesize(
        self, text: str, speaking_rate: float = 1.0, while_speaking: AbstractContextManager[Any] | None = None
    ) -> np.ndarray:
        """Samples for ``text`` (int16, mono, at ``sample_rate``); empty when there is nothing to say.

        ``speaking_rate`` above 1 speaks faster; both engines take its inverse as length scale.
        ``while_speaking`` is entered only once this voice is free (a reply waiting for another
        reply's synthesis holds no core meanwhile).
        """
        if not any(ch.isalnum() for ch in text):
            return np.zeros(0, dtype=np.int16)
        with self._lock, while_speaking or nullcontext():
            samples = np.asarray(self._synthesize(text, 1.0 / speaking_rate), dtype=np.float32).reshape(-1)
        return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)

    @abstractmethod
    def _synthesize(self, text: str, length_scale: float) -> np.ndarray:
        """Float samples in [-1, 1] for non-empty ``text``."""
