"""A spoken reply on a virtual clock: a model and a voice whose pace the test sets, no threads, no sleeps.

It plays the pipeline's three stages in 1 ms steps, with the product's own chunker and pacer
deciding, as :class:`speakstream.pipeline.reply.ReplyPipeline` does:
- the model writes a token every ``1 / tokens_per_second`` seconds, except while it is paused
  (the voice speaks the reply's first chunk), when it waits after a token as the product's
  model does: ``MAX_PAUSE_SECONDS`` at most, then it writes the next one;
- the chunker cuts what it wrote, each chunk no longer than the pacer's limit;
- the voice speaks one chunk at a time, ``audio_per_char`` seconds of speech a character,
  taking ``real_time_factor`` times as long as the speech lasts;
- the reply hands each segment out when it is ready, except the first, which it keeps back
  while the pacer asks for a cushion.

The listener's side is :meth:`Timeline.gaps`: playback starts with the first segment handed
out and plays them back to back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from speakstream.llm.model import MAX_PAUSE_SECONDS
from speakstream.pipeline.pacing import Pacer
from speakstream.pipeline.timeline import Timeline
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings

from fakes import words

STEP = 0.001


@dataclass
class PacedReply:
    """What the listener got: the chunks, when each segment was handed out, how long the start was held."""

    chunks: list[str]
    timeline: Timeline
    first_audio: float
    cushion: float

    @property
    def gaps(self) -> list[float]:
        return self.timeline.gaps()


def paced_reply(
    script: str,
    tokens_per_second: float,
    real_time_factor: float,
    *,
    pacing: bool = True,
    audio_per_char: float = 0.06,
    first_token: float = 0.1,
    max_new_tokens: int = 256,
    token_chars: int | None = None,
) -> PacedReply:
    """Play one reply of ``script`` on the virtual clock, a token a word (or ``token_chars``
    characters); ``pacing=False`` is the pipeline without its pacer: the chunker's own sizes, the
    first audio out as soon as it is made."""
    rules = rules_from_settings(Settings())
    chunker, pacer = TextChunker(rules), Pacer(rules, max_new_tokens)
    if token_chars is None:
        tokens = words(script)
    else:
        tokens = [script[i : i + token_chars] for i in range(0, len(script), token_chars)]
    timeline = Timeline(started=0.0)
    voice_queue: deque[str] = deque()
    chunks: list[str] = []
    speaking: tuple[str, float, float] | None = None  # (chunk, done at, synthesis seconds)
    held: list[float] = []
    written, next_token, paused = 0, first_token, False
    waits_since = 0.0  # (while paused) when the model began its wait after a token
    first_ready = first_audio = None
    step = 0

    def cut(new: list[str]) -> None:
        for chunk in new:
            pacer.cut(len(chunk))
            voice_queue.append(chunk)
            chunks.append(chunk)

    def hand_out(now: float, seconds: float) -> None:
        nonlocal first_audio
        first_audio = now if first_audio is None else first_audio
        pacer.handed_out(now, seconds)
        timeline.segments.append((now, seconds))

    while True:
        now = step * STEP
        step += 1
        # The model.
        if paused and now - waits_since < MAX_PAUSE_SECONDS:
            next_token = now + 1 / tokens_per_second
        elif written < len(tokens) and now >= next_token:
            waits_since = now
            pacer.wrote(len(tokens[written]), now)
            cut(chunker.feed(tokens[written], pacer.chunk_limit(now) if pacing else None))
            written += 1
            next_token = now + 1 / tokens_per_second
            if written == len(tokens):
                pacer.finished_writing()
                cut(chunker.flush(pacer.chunk_limit(now) if pacing else None))
        # The voice.
        if speaking is not None and now >= speaking[1]:
            chunk, _, took = speaking
            seconds = len(chunk) * audio_per_char
            pacer.audio_ready(seconds, len(chunk), took)
            first_ready = now if first_ready is None else first_ready
            if held or (pacing and first_audio is None and pacer.hold_seconds(now) > 0):
                held.append(seconds)
            else:
                hand_out(now, seconds)
            if paused:
                paused = False
                pacer.resumed(now)
            speaking = None
        if speaking is None and voice_queue:
            chunk = voice_queue.popleft()
            took = real_time_factor * len(chunk) * audio_per_char
            speaking = (chunk, now + took, took)
            if first_ready is None:  # the model waits while the reply's first chunk is spoken
                paused, waits_since = True, now
                pacer.paused(now)
        # The reply's consumer: the cushion.
        all_made = written == len(tokens) and speaking is None and not voice_queue
        if held and (all_made or pacer.hold_seconds(now) <= 0):
            for seconds in held:
                hand_out(now, seconds)
            held.clear()
        if all_made and not held:
            break
    assert first_audio is not None and first_ready is not None
    return PacedReply(chunks, timeline, first_audio, first_audio - first_ready)
