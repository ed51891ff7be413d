"""Keeping a reply's speech from running dry on a slow machine: chunks that grow, and a start-up cushion.

The listener hears a chunk only after the model has written it and the voice has spoken it,
so each chunk must be ready before the audio handed out before it has played. On a fast
machine both stages run many times faster than speech and the chunker's own sizes are
enough. On a slow one a long second chunk is still being written when the short first one
has been heard, and the listener hears a silence mid-reply.

A :class:`Pacer` per reply measures, in that reply, how fast the model writes (characters a
second, pauses left out), how fast the voice works (seconds of synthesis a character) and how
long the speech lasts (seconds of audio a character), and answers two questions:

- :meth:`Pacer.chunk_limit`: the longest the chunk being written may grow so that its audio is
  ready before the audio already on its way has played. The limit grows with that audio, so
  chunks grow through a reply;
- :meth:`Pacer.hold_seconds`: how much longer to keep the reply's first audio back, so that at
  the pace measured playback never waits: for the next chunk, and for the whole rest of the
  reply when the machine writes and speaks slower than the voice talks.

Until it has measured both stages it answers "no limit" and "no hold", so where the machine
is fast a reply is cut and starts sounding exactly as it did without it. Every method takes
the time (seconds on any one clock), so the pacing can be checked on a virtual clock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from speakstream.text.chunker import ChunkRules

# Planned times are stretched by this factor: the pace of the next few seconds is not quite
# the pace of the last few (a long word, a busier core).
SLACK = 1.25
# Seconds a segment may take from the voice to the listener's speaker: the hand-over to the
# page, the event stream and the player's own start-up lead.
HAND_OVER_SECONDS = 0.1
# The voice asks for the cores it gains from once its synthesis of a character takes this share
# of the character's speech or more: still faster than it plays, but too close for comfort.
VOICE_BEHIND = 0.5


@dataclass(frozen=True)
class Pace:
    """What a reply has measured so far (None where nothing yet)."""

    write_seconds_per_char: float | None
    synthesis_seconds_per_char: float | None
    audio_seconds_per_char: float | None
    chars_per_token: float | None

    @property
    def keeps_up(self) -> bool | None:
        """Whether writing and speaking together make speech faster than it plays (None: not known yet)."""
        if self.write_seconds_per_char is None or self.synthesis_seconds_per_char is None:
            return None
        assert self.audio_seconds_per_char is not None
        slowest = max(self.write_seconds_per_char, self.synthesis_seconds_per_char) * SLACK
        return slowest <= self.audio_seconds_per_char


class Pacer:
    """One reply's pace and plan; thread-safe (the text thread, the voice thread and the reply's
    consumer each report what they did)."""

    def __init__(self, rules: ChunkRules, max_new_tokens: int) -> None:
        self.rules = rules
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()
        # Writing: timed between pieces of text, leaving out every interval the model was asked to
        # wait in (it waits a while at most, so in a long pause it writes on at an unknown pace).
        self._last_piece_at: float | None = None
        self._paused_now = False
        self._pause_touched = False  # the interval since the last piece saw a pause
        self._writing_seconds = 0.0
        self._chars_timed = 0
        self._chars_written = 0
        self._tokens_written = 0
        self._finished = False
        # The chunk being written: where it began (characters written then).
        self._chunk_began_at_char = 0
        # The voice: the chunks cut but not yet spoken in full (sizes, oldest first), and what it
        # measured on those it spoke.
        self._unspoken: deque[int] = deque()
        self._chars_spoken = 0
        self._synthesis_seconds = 0.0
        self._audio_seconds = 0.0
        self._chunk_audio = 0.0  # audio of the chunk being spoken, handed to the reply so far
        self._voice_slow = False
        # Playback: the audio kept back, and when what was handed out will have played (None: not begun).
        self._held_seconds = 0.0
        self._plays_until: float | None = None

    # -- what happened ------------------------------------------------------------------------

    def wrote(self, chars: int, at: float, tokens: int = 1) -> None:
        """The model wrote a piece of text, ``tokens`` tokens long."""
        with self._lock:
            if self._last_piece_at is not None and not self._pause_touched:
                self._writing_seconds += at - self._last_piece_at
                self._chars_timed += chars
            self._last_piece_at = at
            self._pause_touched = self._paused_now
            self._chars_written += chars
            self._tokens_written += tokens

    def finished_writing(self) -> None:
        with self._lock:
            self._finished = True

    def paused(self, at: float) -> None:
        """The model was asked to wait (the voice has the cores); its pace leaves this interval out."""
        with self._lock:
            self._paused_now = self._pause_touched = True

    def resumed(self, at: float) -> None:
        with self._lock:
            self._paused_now = False

    def cut(self, chars: int) -> None:
        """A chunk of ``chars`` characters went to the voice; the next one begins here."""
        with self._lock:
            self._unspoken.append(chars)
            self._chunk_began_at_char = self._chars_written

    def audio_ready(
        self, seconds: float, chunk_chars: int = 0, synthesis_seconds: float = 0.0, kept: bool = False
    ) -> None:
        """The voice made ``seconds`` of audio; with ``chunk_chars``, it finished a chunk that long,
        in ``synthesis_seconds`` (``kept``: the chunk's speech was kept from before, which says
        nothing of the voice's pace)."""
        with self._lock:
            self._held_seconds += seconds
            self._chunk_audio += seconds
            if chunk_chars:
                self._drop_unspoken()
                if not kept:
                    self._chars_spoken += chunk_chars
                    self._synthesis_seconds += synthesis_seconds
                    self._audio_seconds += self._chunk_audio
                self._chunk_audio = 0.0

    def chunk_skipped(self, chars: int) -> None:
        """The voice gave up on a chunk (it is logged elsewhere): nothing of it will play."""
        with self._lock:
            self._drop_unspoken()
            self._chunk_audio = 0.0

    def handed_out(self, at: float, seconds: float) -> None:
        """``seconds`` of the ready audio went to the listener at ``at``; playback begins with the first."""
        with self._lock:
            begins = at if self._plays_until is None else max(self._plays_until, at)
            self._plays_until = begins + seconds
            self._held_seconds = max(0.0, self._held_seconds - seconds)

    # -- what to do ---------------------------------------------------------------------------

    def pace(self, at: float) -> Pace:
        with self._lock:
            return self._pace(at)

    def chunk_limit(self, at: float) -> int | None:
        """The most characters the chunk being written may have (None: the chunker's own limit)."""
        with self._lock:
            pace = self._pace(at)
            write, synth = pace.write_seconds_per_char, pace.synthesis_seconds_per_char
            plays_until = self._plays_until
            if plays_until is None and self._held_seconds:
                plays_until = at + self._held_seconds  # as if handed out now: holding on only adds time
            if write is None or synth is None or plays_until is None:
                return None
            write, synth = write * SLACK, max(synth * SLACK, 1e-6)
            deadline = plays_until + self._coming_audio(pace) - HAND_OVER_SECONDS
            voice_free = at + sum(self._unspoken) * synth
            # A chunk is cut once the token after it has come (only then is its end certain).
            written = self._chars_written - self._chunk_began_at_char - (pace.chars_per_token or 0.0)
            # Ready = max(written by, voice free) + its synthesis, at or before the deadline.
            by_writing = (deadline - at + written * write) / (write + synth)
            by_voice = (deadline - voice_free) / synth
            limit = min(by_writing, by_voice)
            return max(self.rules.min_chars, math.floor(limit)) if limit < self.rules.max_chars else None

    def voice_threads(self, most: int) -> int:
        """Threads to ask for the voice's next chunk, of the ``most`` it gains from: all of them once
        it has been slow in this reply (see ``VOICE_BEHIND``), else one. Slow once, it stays so for
        the reply: on more threads its pace no longer says how it does on one."""
        with self._lock:
            if not self._voice_slow and self._chars_spoken:
                self._voice_slow = self._synthesis_seconds >= VOICE_BEHIND * self._audio_seconds
            return most if self._voice_slow else 1

    def hold_seconds(self, at: float) -> float:
        """How much longer to keep the reply's first audio back (0: hand it out now)."""
        with self._lock:
            if self._plays_until is not None or self._held_seconds == 0:
                return 0.0
            pace = self._pace(at)
            write, synth = pace.write_seconds_per_char, pace.synthesis_seconds_per_char
            audio = pace.audio_seconds_per_char
            if synth is None or audio is None:
                return 0.0  # nothing measured: no reason to wait
            write, synth = (write or 0.0) * SLACK, synth * SLACK
            # Each chunk already with the voice: made before its turn to play comes.
            hold, made, before = 0.0, 0.0, -self._chunk_audio
            for chars in self._unspoken:
                made += chars * synth
                hold = max(hold, made + HAND_OVER_SECONDS - self._held_seconds - max(0.0, before))
                before += chars * audio
            remaining = self._remaining_chars(pace)
            if remaining == 0:
                return max(0.0, hold)
            # The next chunk: the rest of its smallest useful size written (and the token after
            # it), then spoken after what the voice still has.
            plays_until = at + self._held_seconds + self._coming_audio(pace)
            written = self._chars_written - self._chunk_began_at_char
            size = min(remaining, self.rules.first_max_chars)
            to_write = max(0.0, size + (pace.chars_per_token or 0.0) - written)
            next_ready = max(at + to_write * write, at + made) + size * synth
            hold = max(hold, next_ready + HAND_OVER_SECONDS - plays_until)
            # The rest of the reply, when it is made slower than it plays: its last chunk is the
            # one that comes latest.
            slowest = max(write, synth)
            if slowest > audio:
                last = at + remaining * (slowest - audio) + size * (synth + audio) + HAND_OVER_SECONDS
                hold = max(hold, last - plays_until)
            return max(0.0, hold)

    # -- (under the lock) -----------------------------------------------------------------------

    def _pace(self, at: float) -> Pace:
        write = None
        if self._finished:
            write = 0.0  # nothing left to write
        elif self._chars_timed:
            seconds = self._writing_seconds
            if self._last_piece_at is not None and not self._pause_touched:
                seconds += max(0.0, at - self._last_piece_at)  # (a token that is slow to come slows the pace)
            write = seconds / self._chars_timed
        synth = audio = None
        if self._chars_spoken:
            synth = self._synthesis_seconds / self._chars_spoken
            audio = self._audio_seconds / self._chars_spoken
        per_token = self._chars_written / self._tokens_written if self._tokens_written else None
        return Pace(write, synth, audio, per_token)

    def _drop_unspoken(self) -> None:
        """The voice is done with its oldest chunk."""
        if self._unspoken:
            self._unspoken.popleft()

    def _coming_audio(self, pace: Pace) -> float:
        """Seconds of audio the chunks already with the voice will add (their made part is held)."""
        assert pace.audio_seconds_per_char is not None
        return max(0.0, sum(self._unspoken) * pace.audio_seconds_per_char - self._chunk_audio)

    def _remaining_chars(self, pace: Pace) -> int:
        """Characters still to be written and spoken after the chunks with the voice: the text
        written since the last cut, plus, while the model writes, all it may still write."""
        written = self._chars_written - self._chunk_began_at_char
        if self._finished:
            return written
        per_token = pace.chars_per_token or 0.0
        return written + math.ceil(max(0, self.max_new_tokens - self._tokens_written) * per_token)
