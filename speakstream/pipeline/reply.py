"""One spoken reply: the model writes, the chunker cuts, the voice speaks, all at once.

Three threads per reply, joined by two queues:

    model.stream_reply ──text──> [reader] ──chunks──> [voice] ──audio──┐
                                    └────────────text──────────────────┴──> events ──> reply()

The reader thread forwards each piece of text at once and feeds the chunker; the voice
thread synthesizes chunk N while the model writes chunk N+1, so a reply takes about as
long as the slower stage, not the sum. ``reply()`` merges both into
:class:`ReplyUpdate` values in the order they happened. A :class:`Pacer` hears from all three
and keeps the speech from running dry on a slow machine: it shortens the chunk being written
when its audio is needed soon, and ``reply()`` keeps the first audio back while it says so.

Setting ``stop`` (or closing the iterator) ends generation within a token and drops queued
synthesis; every thread ends by itself, so nothing is joined on the caller's thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from speakstream.audio.level import gain_for, with_gain
from speakstream.audio.segments import from_first_sound, resample, with_fades
from speakstream.llm.model import ChatModel, Message, ReplyGate, Sampling
from speakstream.pipeline.pacing import Pacer
from speakstream.pipeline.reply_cache import KeptReply, ReplyCache, reply_key
from speakstream.pipeline.timeline import Timeline
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.conversation import trim_to_context
from speakstream.text.openings import lines_to_keep
from speakstream.text.speech_text import SpeechCleaner
from speakstream.text.word_filter import WordFilter
from speakstream.torch_threads import CoreBudget
from speakstream.voices import Voice, VoiceSet
from speakstream.voices.cache import SpeechCache

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 22050
# How long reply() waits for the next event before it checks that its workers are alive and
# hands its consumer a repeat of the last update (so a slow start can still be stopped at once).
POLL_SECONDS = 0.5
# Text updates come at most this often (what came in between goes with the next): a page
# re-renders the chat for each one, and a model can write faster than a screen shows.
TEXT_FRAME_SECONDS = 0.05


@dataclass(frozen=True)
class ReplyOptions:
    """What one reply uses: the model and its sampling, which voice at what rate (``voice=None``: text only),
    and whether the page showing it runs on this machine (its browser shares our cores)."""

    model: ChatModel
    sampling: Sampling
    voice: Voice | None
    speaking_rate: float = 1.0
    page_here: bool = False
    replayable: bool = False  # given a kept reply where there is one (see reply_cache)


@dataclass(frozen=True)
class ReplyUpdate:
    """The reply's text so far, and a new audio segment (int16 samples) when one is ready,
    with the piece of the reply's text it speaks (as written, for the page to highlight)."""

    text: str
    timeline: Timeline
    audio: np.ndarray | None = None
    spoken: str = ""
    final: bool = False
    completed: bool = False  # (final only) it ran to its end, not stopped


@dataclass(frozen=True)
class Written:
    """The model wrote a piece of text."""

    piece: str


@dataclass(frozen=True)
class Spoken:
    """The voice made a piece of a chunk's speech (the whole of it made when ``chunk_done``)."""

    samples: np.ndarray
    shown: str
    chunk_done: bool


@dataclass(frozen=True)
class Failed:
    """A worker failed: the reply raises this error."""

    error: BaseException


@dataclass(frozen=True)
class Finished:
    """A worker ("text" or "voice") ended."""

    worker: str


Event = Written | Spoken | Failed | Finished


class ModelPause:
    """The event the model waits on between tokens (the voice has the cores), told to the pacer too,
    so the model's pace leaves the waits out."""

    def __init__(self, pacer: Pacer, timeline: Timeline) -> None:
        self.event = threading.Event()
        self._pacer = pacer
        self._timeline = timeline

    def set(self) -> None:
        self._pacer.paused(self._timeline.now())
        self.event.set()

    def clear(self) -> None:
        self.event.clear()
        self._pacer.resumed(self._timeline.now())


class ReplyPipeline:
    """Shared by all sessions, with no per-user state: the voices, the speech they made, the word
    list, the cores.

    The models are not its own: each reply's options name the model that writes it.
    """

    def __init__(
        self,
        settings: Settings,
        voices: VoiceSet,
        speech: SpeechCache,
        word_filter: WordFilter,
        cores: CoreBudget,
        replies: ReplyCache | None = None,
    ) -> None:
        self.settings = settings
        self.voices = voices
        self.speech = speech
        self.replies = replies if replies is not None else ReplyCache(0)
        self.word_filter = word_filter
        self.cores = cores
        default = voices.get(None)
        self.sample_rate = default.sample_rate if default else DEFAULT_SAMPLE_RATE

    def keep_common_speech(self) -> int:
        """Make, in the default voice at the default rate, what replies most often begin with and
        the lines the app says itself, so those first sounds never wait for the voice (run at
        start-up, on a thread of its own: each line takes a core as a reply's voice would). How
        many lines it made."""
        voice = self.voices.get(None)
        if voice is None or self.settings.text_only:
            return 0
        made = self.speech.fill(
            voice, lines_to_keep(voice.language), self.settings.speaking_rate, self.cores.voice_speaking
        )
        log.info("Voice cache: %d lines in %s made at start (%.1f MB kept)", made, voice.label, self.speech.bytes / 1e6)
        return made

    def options(
        self,
        model: ChatModel,
        voice: str | None = None,
        speaking_rate: float | None = None,
        speak: bool = True,
        sampling: Sampling | None = None,
        page_here: bool = False,
        replayable: bool = False,
        own: Voice | None = None,
    ) -> ReplyOptions:
        """Options for a reply by ``model``; each other one left out is the server's default.
        ``own``: the user's own voice, which speaks in place of ``voice``."""
        return ReplyOptions(
            model=model,
            sampling=sampling or Sampling.from_settings(self.settings),
            voice=(own or self.voices.get(voice)) if speak else None,
            speaking_rate=speaking_rate or self.settings.speaking_rate,
            page_here=page_here,
            replayable=replayable,
        )

    def prompt(self, messages: Sequence[Message], options: ReplyOptions) -> list[Message]:
        """The conversation trimmed (oldest turns first) so prompt plus reply fit the context."""
        budget = options.model.context_length - options.sampling.max_new_tokens
        return trim_to_context(list(messages), options.model.count_tokens, budget)

    def reply(self, messages: Sequence[Message], stop: threading.Event, options: ReplyOptions) -> Iterator[ReplyUpdate]:
        """Stream the reply: an update per piece of text and per audio segment, then a final one.

        A ``replayable`` request whose reply is kept is given it again at once; one that is not
        kept yet keeps its reply if it runs to its end with every chunk spoken. Raises the
        model's error, if any, after stopping the other workers.
        """
        voice = options.voice.key if options.voice else ""
        key = reply_key(options.model, messages, options.sampling, voice, options.speaking_rate)
        kept = self.replies.get(key) if options.replayable else None
        if kept is not None:
            yield from self._replayed(kept, stop, options)
            return
        segments = []
        for update in self._write_and_speak(messages, stop, options):
            if update.audio is not None:
                segments.append((update.audio, update.spoken))
            if update.final and options.replayable and update.completed and not update.timeline.voice_failures:
                self.replies.keep(key, KeptReply(update.text, tuple(segments)))
            yield update

    def _replayed(self, kept: KeptReply, stop: threading.Event, options: ReplyOptions) -> Iterator[ReplyUpdate]:
        """A kept reply, all of it at once (Stop still stops it)."""
        model = f"{options.model.name}, the same reply again"
        timeline = Timeline(voice=options.voice.label if options.voice else "", model=model)
        timeline.mark("first_token")
        for samples, spoken in kept.segments:
            if stop.is_set():
                break
            timeline.mark("first_audio")
            timeline.audio_seconds += samples.size / self.sample_rate
            yield ReplyUpdate(kept.text, timeline, samples, spoken)
        timeline.mark("done")
        timeline.tokens = options.model.text_tokens(kept.text)
        yield ReplyUpdate(kept.text, timeline, final=True, completed=not stop.is_set())

    def _write_and_speak(
        self, messages: Sequence[Message], stop: threading.Event, options: ReplyOptions
    ) -> Iterator[ReplyUpdate]:
        timeline = Timeline(voice=options.voice.label if options.voice else "", model=options.model.name)
        pacer = Pacer(rules_from_settings(self.settings), options.sampling.max_new_tokens)
        # The first sound is what a listener waits for, so until it is out the model pauses
        # (MAX_PAUSE_SECONDS at most each time) while the voice speaks the first chunk, and again
        # while the consumer hands that audio on (and the voice makes the rest of that chunk,
        # when it handed out its start early): the voice and the hand-over get the cores.
        pause = ModelPause(pacer, timeline)
        events: queue.Queue[Event] = queue.Queue()
        chunks: queue.Queue[str | None] = queue.Queue()
        prompt = self.prompt(messages, options)
        workers = [
            threading.Thread(
                target=self._read_text,
                args=(prompt, stop, pause, pacer, options, timeline, events, chunks),
                name="speakstream-text",
                daemon=True,
            )
        ]
        if options.voice is not None:
            workers.append(
                threading.Thread(
                    target=self._speak,
                    args=(options, stop, pause, pacer, timeline, chunks, events),
                    name="speakstream-voice",
                    daemon=True,
                )
            )
        for worker in workers:
            worker.start()
        text = ""
        pending = len(workers)
        # Audio ready but kept back (the pacer's start-up cushion), as (samples, spoken, chunk done).
        held: list[Spoken] = []
        shown_at, unshown = -math.inf, False  # the last text update, and text written since
        try:
            while pending:
                if stop.is_set():
                    held.clear()  # (a stopped reply says nothing more)
                hold = pacer.hold_seconds(timeline.now()) if held else 0.0
                if held and hold <= 0:
                    timeline.cushion_seconds = timeline.now() - (timeline.first_ready or timeline.now())
                    if pacer.pace(timeline.now()).keeps_up is False:
                        log.warning(
                            "This machine writes and speaks slower than the voice talks: the reply's "
                            "speech waited %.1f s so it would not stop mid-sentence (%s)",
                            timeline.cushion_seconds,
                            timeline.model,
                        )
                    for audio in held:
                        yield from self._hand_out(text, audio, timeline, pacer, pause)
                    held.clear()
                    unshown = False
                    continue
                wait = min(POLL_SECONDS, hold) if held else POLL_SECONDS
                if unshown:
                    wait = min(wait, max(0.0, shown_at + TEXT_FRAME_SECONDS - timeline.now()))
                try:
                    event = events.get(timeout=wait)
                except queue.Empty:
                    if not held and not any(worker.is_alive() for worker in workers) and events.empty():
                        break  # (what a worker put just before it ended is read first)
                    if wait == POLL_SECONDS or (unshown and timeline.now() - shown_at >= TEXT_FRAME_SECONDS):
                        # The text held back, or a repeat, so the consumer (and Gradio's Stop) gets a turn.
                        shown_at, unshown = timeline.now(), False
                        yield ReplyUpdate(self.word_filter.mask(text), timeline)
                    continue  # (and a hold is checked again above)
                match event:
                    case Written(piece):
                        timeline.mark("first_token")
                        text += piece
                        unshown = True
                        if timeline.now() - shown_at >= TEXT_FRAME_SECONDS:
                            shown_at, unshown = timeline.now(), False
                            yield ReplyUpdate(self.word_filter.mask(text), timeline)
                    case Spoken():
                        timeline.mark("first_ready")
                        if held or (timeline.first_audio is None and pacer.hold_seconds(timeline.now()) > 0):
                            held.append(event)
                        else:
                            yield from self._hand_out(text, event, timeline, pacer, pause)
                            unshown = False
                    case Failed(error):
                        if unshown:  # (what was written before the error stays on the page)
                            yield ReplyUpdate(self.word_filter.mask(text), timeline)
                        raise error
                    case Finished(worker):
                        if worker == "text":
                            timeline.mark("generated")
                        pending -= 1
            for audio in [] if stop.is_set() else held:  # (all is made: nothing left to wait for)
                yield from self._hand_out(text, audio, timeline, pacer, pause)
            completed = not stop.is_set()
        finally:
            stop.set()
        timeline.mark("done")
        timeline.tokens = options.model.text_tokens(text)
        log.debug("Reply timeline: %s", timeline.summary())
        yield ReplyUpdate(self.word_filter.mask(text), timeline, final=True, completed=completed)

    def _hand_out(
        self,
        text: str,
        audio: Spoken,
        timeline: Timeline,
        pacer: Pacer,
        pause: ModelPause,
    ) -> Iterator[ReplyUpdate]:
        """Hand a segment to the consumer; the first one pauses the model while it goes."""
        first = timeline.first_audio is None
        timeline.mark("first_audio")
        timeline.last_audio = timeline.now()
        seconds = audio.samples.size / self.sample_rate
        timeline.segments.append((timeline.last_audio, seconds))
        pacer.handed_out(timeline.last_audio, seconds)
        if first and self.settings.pause_for_first_audio:
            pause.set()
        yield ReplyUpdate(self.word_filter.mask(text), timeline, audio=audio.samples, spoken=audio.shown)
        if audio.chunk_done:  # (while the voice still makes the rest of a chunk, the model waits on)
            pause.clear()

    def _read_text(
        self,
        prompt: list[Message],
        stop: threading.Event,
        pause: ModelPause,
        pacer: Pacer,
        options: ReplyOptions,
        timeline: Timeline,
        events: queue.Queue[Event],
        chunks: queue.Queue[str | None],
    ) -> None:
        """Forward the model's text as it comes, and cut it into chunks for the voice."""
        try:
            with self.cores.page_showing() if options.page_here else contextlib.nullcontext():
                chunker = TextChunker(rules_from_settings(self.settings))
                stream = options.model.stream_reply(prompt, options.sampling, ReplyGate(stop, pause.event, self.cores))
                for piece in stream:
                    events.put(Written(piece))
                    pacer.wrote(len(piece), timeline.now(), options.model.text_tokens(piece))
                    for chunk in chunker.feed(piece, pacer.chunk_limit(timeline.now())):
                        self._cut(chunk, pacer, timeline, chunks)
                pacer.finished_writing()
                if not stop.is_set():
                    for chunk in chunker.flush(pacer.chunk_limit(timeline.now())):
                        self._cut(chunk, pacer, timeline, chunks)
        except Exception as error:  # noqa: BLE001 - handed to reply(), which raises it
            events.put(Failed(error))
        finally:
            chunks.put(None)
            events.put(Finished("text"))

    @staticmethod
    def _cut(chunk: str, pacer: Pacer, timeline: Timeline, chunks: queue.Queue[str | None]) -> None:
        timeline.mark("first_chunk")
        pacer.cut(len(chunk))
        chunks.put(chunk)

    def _speak(
        self,
        options: ReplyOptions,
        stop: threading.Event,
        pause: ModelPause,
        pacer: Pacer,
        timeline: Timeline,
        chunks: queue.Queue[str | None],
        events: queue.Queue[Event],
    ) -> None:
        """Synthesize chunk after chunk; a failing chunk is logged and skipped, the reply goes on."""
        voice = options.voice
        assert voice is not None
        cleaner = SpeechCleaner(voice.language)
        first = True  # the reply's first sound is still to come
        begun = False  # the chunk being spoken has handed out its start already
        gain = 1.0  # the level of the chunk being spoken, set by its first piece

        def hand_out(
            samples: np.ndarray, shown: str, end: bool, chars: int = 0, took: float = 0.0, kept: bool = False
        ) -> None:
            """Queue a piece of a chunk's speech (the whole of it made when ``end``, from ``chars``
            characters in ``took`` seconds, or ``kept`` from before); one level for all of it, fades
            only where it starts and ends."""
            nonlocal first, begun, gain
            start, begun = not begun, not end
            if stop.is_set():
                return
            if samples.size:
                samples = resample(samples, voice.sample_rate, self.sample_rate)
                if start:
                    gain = gain_for(samples, self.sample_rate)
                samples = with_gain(samples, gain)
                if first:  # the reply's first sound comes as soon as it can
                    samples, first = from_first_sound(samples, self.sample_rate), False
                samples = with_fades(samples, self.sample_rate, fade_in=start, fade_out=end)
            seconds = samples.size / self.sample_rate
            timeline.audio_seconds += seconds
            pacer.audio_ready(seconds, chars, took, kept)  # (before the reply can hear of it)
            if samples.size:
                events.put(Spoken(samples, shown, end))

        try:
            while (chunk := chunks.get()) is not None:
                if stop.is_set():
                    continue  # drain without speaking: the reply was stopped
                shown = self.word_filter.mask(chunk)
                spoken = cleaner.clean(shown)
                if not spoken:
                    pacer.chunk_skipped(len(chunk))
                    continue
                started = time.perf_counter()
                if first and self.settings.pause_for_first_audio:
                    pause.set()
                # Until the first sound is out, a voice that can hands out the start of its speech early.
                lead = functools.partial(hand_out, shown=shown, end=False) if first else None
                try:
                    cores = self.cores.voice_speaking(pacer.voice_threads(voice.most_threads))
                    samples, kept = self.speech.speak(voice, spoken, options.speaking_rate, cores, lead)
                except Exception:
                    log.exception("Voice %s failed on a chunk of %d characters; skipped", voice.key, len(spoken))
                    timeline.voice_failures += 1
                    pacer.chunk_skipped(len(chunk))
                    begun = False
                    continue
                finally:
                    pause.clear()
                took = time.perf_counter() - started
                timeline.synthesis_seconds += took
                hand_out(samples, shown, end=True, chars=len(chunk), took=took, kept=kept)
        finally:
            events.put(Finished("voice"))
