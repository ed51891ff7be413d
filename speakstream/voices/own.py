"""Voices users make from their own speech ("Your voice"): one per session, in memory only, bounded.

A clip is heard once by a Pocket TTS model (:meth:`PocketVoice.clone_state`); only the state it
leaves is kept, never the clip, and nothing of either is written to disk or to the logs. At
most ``most`` such voices stay on the server: making one more forgets the least recently used.
A session's voice is also forgotten when its page closes or the user asks. Making one takes a
core from the CPU budget, as a voice speaking does.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from speakstream.torch_threads import CoreBudget
from speakstream.voices.base import Voice
from speakstream.voices.pocket import PocketVoice, is_pocket

log = logging.getLogger(__name__)

OWN = "own"  # the picker's value for "Your voice"
OWN_LABEL = "Your voice (make it under Your voice)"
# How long a clip may be, in seconds: shorter ones clone poorly, longer ones cost more to hear.
CLIP_SECONDS = (5.0, 20.0)


class OwnVoices:
    """The voices made from users' clips, by their session (Gradio's session id, which only that
    page or client holds)."""

    def __init__(self, most: int, cores: CoreBudget | None = None) -> None:
        self.most = most
        self.cores = cores
        self._voices: OrderedDict[str, Voice] = OrderedDict()
        self._lock = threading.Lock()

    def make(self, base: PocketVoice, samples: np.ndarray, token: str) -> None:
        """Session ``token``'s voice, on ``base``'s model, from ``samples`` (float mono at
        ``base.sample_rate``), in place of its earlier one. Raises
        :class:`~speakstream.voices.base.VoiceLoadError` where ``base`` cannot clone."""
        state = base.clone_state(samples, self.cores.voice_speaking() if self.cores else None)
        # A key of its own (never the session's id: keys reach the logs), so speech never crosses voices.
        voice = base.cloned(f"{OWN}/{secrets.token_hex(8)}", "Your voice", state)
        with self._lock:
            self._voices[token] = voice
            self._voices.move_to_end(token)
            while len(self._voices) > self.most:
                self._voices.popitem(last=False)
                log.info("A voice made from a user's clip was forgotten to make room")

    def get(self, token: str | None) -> Voice | None:
        """The voice kept under ``token`` (None: none, or forgotten since)."""
        with self._lock:
            voice = self._voices.get(token or "")
            if voice is not None:
                self._voices.move_to_end(token)
            return voice

    def forget(self, token: str | None) -> bool:
        """Forget the voice kept under ``token``; whether there was one."""
        with self._lock:
            return self._voices.pop(token or "", None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._voices)


def clone_base(
    offered: list[str], picked: str | None, loaded: Callable[[str], bool] = lambda name: False
) -> str | None:
    """The Pocket TTS voice whose model hears a user's clip: the picked one where it is a Pocket TTS
    voice (the own voice then speaks its language), else one already ``loaded``, else the first
    offered (None: none offered)."""
    pocket = [name for name in offered if is_pocket(name)]
    if picked in pocket:
        return picked
    return next((name for name in pocket if loaded(name)), next(iter(pocket), None))
