"""Where the user's turn starts and ends, from each frame's speech probability.

Speech starts after :attr:`TurnRules.onset` seconds of frames above the start threshold (then a
reply being spoken is interrupted); the turn ends after :attr:`TurnRules.end_silence` seconds of
frames below the stop threshold. The two thresholds differ so that a word's quiet tail does not
end it. What was heard just before the onset is kept, so the first syllable is not lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from speakstream.hearing.audio_in import RATE
from speakstream.hearing.speech_activity import FRAME

FRAME_SECONDS = FRAME / RATE


@dataclass(frozen=True)
class TurnRules:
    """When a turn starts and ends (seconds, probabilities)."""

    end_silence: float = 0.6
    onset: float = 0.06
    start: float = 0.5
    stop: float = 0.35
    before_onset: float = 0.3  # audio kept from before the onset
    max_seconds: float = 30.0

    def frames(self, seconds: float) -> int:
        return max(1, round(seconds / FRAME_SECONDS))


class Turn:
    """One listening stream's turn: ``quiet`` until speech starts, ``speaking``, then ``ended``
    (the utterance is ready), ``too_long``, or ``no_speech`` (finished with none heard)."""

    def __init__(self, probability: Callable[[np.ndarray], float], rules: TurnRules) -> None:
        self.probability = probability
        self.rules = rules
        self.pending = np.zeros(0, dtype=np.float32)
        self.state = "quiet"
        self.before: deque[np.ndarray] = deque(maxlen=self.rules.frames(self.rules.before_onset))
        self.frames: list[np.ndarray] = []
        self.run = 0  # frames in a row above the start threshold (quiet) or below the stop one (speaking)
        self.heard = 0  # frames since the turn's audio began, for the length limit
        self.quiet_frames = 0  # frames heard while quiet

    def feed(self, samples: np.ndarray) -> str:
        """Hear ``samples`` (16 kHz); the state after them. Audio after the turn ended waits for the next."""
        self.pending = np.concatenate([self.pending, samples.astype(np.float32)])
        while len(self.pending) >= FRAME and self.state in ("quiet", "speaking"):
            frame, self.pending = self.pending[:FRAME], self.pending[FRAME:]
            self._frame(frame, self.probability(frame))
        return self.state

    def _frame(self, frame: np.ndarray, probability: float) -> None:
        rules = self.rules
        if self.state == "quiet":
            self.quiet_frames += 1
            self.before.append(frame)
            self.run = self.run + 1 if probability >= rules.start else 0
            if self.run >= rules.frames(rules.onset):
                self.state, self.frames, self.run = "speaking", list(self.before), 0
                self.heard = len(self.frames)
            return
        self.frames.append(frame)
        self.heard += 1
        if self.heard * FRAME_SECONDS > rules.max_seconds:
            self.state = "too_long"
            self.frames = []
            return
        self.run = self.run + 1 if probability < rules.stop else 0
        if self.run >= rules.frames(rules.end_silence):
            self.state = "ended"

    def finish(self) -> str:
        """The user says the turn is over: ``ended`` if speech was heard, else ``no_speech``."""
        self.state = "ended" if self.state == "speaking" else "no_speech"
        return self.state

    def utterance(self) -> np.ndarray:
        """What was said, from just before the onset to the start of the closing silence."""
        return self.utterance_before_pause() if self.state == "ended" else self._joined(self.frames)

    def utterance_before_pause(self) -> np.ndarray:
        """What was said up to the silence it is in now (all of it when none): the utterance if
        this silence ends the turn."""
        return self._joined(self.frames[: len(self.frames) - self.run] if self.state != "quiet" else [])

    @staticmethod
    def _joined(frames: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)


def holds_speech(probability: Callable[[np.ndarray], float], samples: np.ndarray, rules: TurnRules) -> bool:
    """Whether a whole recording has a turn's onset of speech in it."""
    turn = Turn(probability, rules)
    return turn.feed(samples) != "quiet"
