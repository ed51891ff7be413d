"""One listening page's utterance, heard piece by piece as the page sends it, and the bounded set
of them the server keeps.

The page sends audio only while its microphone hears more than its own background noise, so a
page that listens in silence costs the server nothing. Each piece answers with the turn's state:
``speaking`` (the page silences a reply being spoken), ``ended`` (the page asks for the answer,
which takes the utterance), ``idle`` (sound but no speech for a while: the page stops sending
until it hears more) or ``quiet``. When the user pauses, the words so far are recognized at once,
so that the answer does not wait for recognition if the pause turns out to end the turn.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from speakstream.hearing.speech_activity import FRAME, SileroVad
from speakstream.hearing.transcriber import Transcript
from speakstream.hearing.turns import FRAME_SECONDS, Turn, TurnRules

# Sound without speech for this long (s) and the page stops sending until it hears more.
GIVE_UP_SECONDS = 1.5
# A pause this long (s) and the words so far are recognized (the turn may end at the pause).
EARLY_AFTER_SECONDS = 0.2
# Listening pages whose audio the server keeps; the least recently heard is forgotten first
# (each holds at most one utterance, up to its length limit).
MOST_LISTENERS = 64

Recognize = Callable[[np.ndarray], "Future[Transcript] | None"]


@dataclass
class Utterance:
    """A finished turn: its audio and, where it was started while the user paused, its words."""

    samples: np.ndarray
    early: Future[Transcript] | None = None
    ended_at: float = 0.0  # when the turn's end was heard (time.monotonic())


class Listener:
    """One page's turn in progress, and the utterance it ended with until the answer takes it."""

    def __init__(self, vad: SileroVad, rules: TurnRules, recognize: Recognize | None = None) -> None:
        self.vad = vad
        self.rules = rules
        self.recognize = recognize
        self.turn = Turn(vad.stream(), rules)
        self.ready: Utterance | None = None
        self.early: tuple[int, Future[Transcript]] | None = None  # (utterance length, its recognition)
        self.lock = threading.Lock()

    def hear(self, samples: np.ndarray, finish: bool = False) -> str:
        """Hear the next piece; the turn's state after it (see the module's docstring).

        ``finish``: the user ended the turn themselves (push-to-talk): it ends now, or is
        ``no_speech`` when no speech was heard.
        """
        with self.lock:
            state = self.turn.feed(samples)
            if finish and state in ("quiet", "speaking"):
                state = self.turn.finish()
            if state == "quiet" and self.turn.quiet_frames * FRAME_SECONDS >= GIVE_UP_SECONDS:
                self._restart()
                return "idle"
            if state == "speaking":
                self._recognize_at_pause()
            elif state == "ended":
                samples = self.turn.utterance()
                early = self.early[1] if self.early and self.early[0] == len(samples) else None
                self.ready = Utterance(samples, early, time.monotonic())
                self._restart()
            elif state in ("too_long", "no_speech"):
                self._restart()
            return state

    def restart(self) -> None:
        """The page starts sending anew (it had stopped): what it sent before is forgotten."""
        with self.lock:
            self._restart()

    def _recognize_at_pause(self) -> None:
        paused = self.turn.run >= self.rules.frames(EARLY_AFTER_SECONDS)
        if not (paused and self.recognize):
            return
        length = (len(self.turn.frames) - self.turn.run) * FRAME  # the words so far, before joining them
        if self.early is None or self.early[0] != length:
            started = self.recognize(self.turn.utterance_before_pause())
            self.early = (length, started) if started is not None else None

    def _restart(self) -> None:
        self.turn = Turn(self.vad.stream(), self.rules)
        self.early = None

    def take(self) -> Utterance | None:
        """The finished utterance, once (None: none is waiting)."""
        with self.lock:
            ready, self.ready = self.ready, None
            return ready


class Listeners:
    """The listening pages' turns by session, at most :data:`MOST_LISTENERS` of them."""

    def __init__(
        self, vad: SileroVad, rules: TurnRules, recognize: Recognize | None = None, most: int = MOST_LISTENERS
    ) -> None:
        self.vad = vad
        self.rules = rules
        self.recognize = recognize
        self.most = most
        self._listeners: OrderedDict[str, Listener] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: str) -> Listener:
        """``session``'s listener, made on first use (the least recently heard one goes beyond the bound)."""
        with self._lock:
            listener = self._listeners.pop(session, None) or Listener(self.vad, self.rules, self.recognize)
            self._listeners[session] = listener
            while len(self._listeners) > self.most:
                self._listeners.popitem(last=False)
            return listener

    def take(self, session: str) -> Utterance | None:
        """``session``'s finished utterance, once."""
        with self._lock:
            listener = self._listeners.get(session)
        return listener.take() if listener else None

    def __len__(self) -> int:
        return len(self._listeners)
