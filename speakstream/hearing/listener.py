"""One listening page's utterance, heard piece by piece as the page sends it, and the bounded set
of them the server keeps.

The page sends audio only while its microphone hears more than its own background noise, so a
page that listens in silence costs the server nothing. Each piece answers with the turn's state:
``speaking`` (the page silences a reply being spoken), ``paused``, ``ended`` (the page asks for
the answer, which takes the utterance), ``answered`` (ended, and an answer already has it),
``idle`` (sound but no speech for a while: the page stops sending until it hears more) or
``quiet``.

When the user pauses, the words so far are recognized at once and the piece answers ``paused``:
the page then asks for the answer straight away, and that answer is prepared while the pause
lasts, shown only if the pause ends the turn (:meth:`Listener.claim`, :meth:`Listener.decided`).
So neither recognition nor the reply's first words wait for the end of the turn to be certain.
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


@dataclass(frozen=True)
class Pause:
    """A pause in the user's speech that may end the turn: the words before it, being recognized."""

    samples: np.ndarray
    early: Future[Transcript]


class Listener:
    """One page's turn in progress, and the utterance it ended with until the answer takes it."""

    def __init__(self, vad: SileroVad, rules: TurnRules, recognize: Recognize | None = None) -> None:
        self.vad = vad
        self.rules = rules
        self.recognize = recognize
        self.turn = Turn(vad.stream(), rules)
        self.ready: Utterance | None = None
        self.early: tuple[int, Future[Transcript]] | None = None  # (utterance length, its recognition)
        self.claimed: Future[Transcript] | None = None  # the pause an answer waits on
        self.lock = threading.Condition()

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
                if self.early and self.early[0] != self._words_so_far():
                    self.early = None  # the user spoke on: that pause did not end the turn
                if self._recognize_at_pause():
                    state = "paused"
            elif state == "ended":
                samples = self.turn.utterance()
                early = self.early[1] if self.early and self.early[0] == len(samples) else None
                self.ready = Utterance(samples, early, time.monotonic())
                if early is not None and early is self.claimed:
                    state = "answered"
                self._restart()
            elif state in ("too_long", "no_speech"):
                self._restart()
            self.lock.notify_all()
            return state

    def restart(self) -> None:
        """The page starts sending anew (it had stopped): what it sent before is forgotten."""
        with self.lock:
            self._restart()
            self.lock.notify_all()

    def claim(self) -> Pause | None:
        """The pause the user is in now, for an answer prepared while it lasts (None: no pause
        being recognized, or another answer has it). The turn's end then answers ``answered``."""
        with self.lock:
            if self.early is None or self.early[1] is self.claimed:
                return None
            self.claimed = self.early[1]
            return Pause(self.turn.utterance_before_pause(), self.claimed)

    def decided(self, pause: Pause, wait: float = 0.0) -> Utterance | bool:
        """Whether ``pause`` ended the turn: its utterance (taken), False when the user spoke on
        or the page started anew, True while the pause goes on (``wait``: seconds to wait for a
        decision). The claim ends with the decision."""
        with self.lock:
            self.lock.wait_for(lambda: self._decision(pause) is not True, timeout=wait)
            decision = self._decision(pause)
            if decision is not True:
                self.release(pause)
            if isinstance(decision, Utterance):
                self.ready = None
            return decision

    def release(self, pause: Pause) -> None:
        """No answer waits on ``pause`` any more."""
        with self.lock:
            if self.claimed is pause.early:
                self.claimed = None

    def _decision(self, pause: Pause) -> Utterance | bool:
        if self.ready is not None and self.ready.early is pause.early:
            return self.ready
        return bool(self.early and self.early[1] is pause.early)

    def _words_so_far(self) -> int:
        """Samples of the utterance before the silence the turn is in now (before joining them)."""
        return (len(self.turn.frames) - self.turn.run) * FRAME

    def _recognize_at_pause(self) -> bool:
        """Whether words were sent to be recognized now (the user has just paused long enough)."""
        paused = self.turn.run >= self.rules.frames(EARLY_AFTER_SECONDS)
        if not (paused and self.recognize):
            return False
        length = self._words_so_far()
        if self.early is not None and self.early[0] == length:
            return False
        started = self.recognize(self.turn.utterance_before_pause())
        self.early = (length, started) if started is not None else None
        return started is not None

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

    def find(self, session: str) -> Listener | None:
        """``session``'s listener, if the server still keeps it."""
        with self._lock:
            return self._listeners.get(session)

    def __len__(self) -> int:
        return len(self._listeners)
