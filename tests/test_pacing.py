"""A reply's speech never runs dry, however slow the machine: chunks that grow, and a start-up cushion.

On a virtual clock (tests/paced_reply.py): a model and a voice whose pace the test sets, the
product's own chunker and pacer deciding. What the listener gets is measured as gaps in
playback, so these hold on any machine, loaded or not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from speakstream.pipeline import reply as reply_module
from speakstream.pipeline.pacing import HAND_OVER_SECONDS, SLACK, VOICE_BEHIND, Pacer
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.word_filter import WordFilter
from speakstream.torch_threads import CoreBudget
from speakstream.voices import VoiceSet
from speakstream.voices.cache import SpeechCache

from fakes import ASK, Events, ScriptedModel, SilentVoice, pipeline_for
from paced_reply import paced_reply

STORY = (
    "Once upon a time, a small robot lived in a quiet town by the sea, where the fishermen and the bakers "
    "knew its name. Every morning it swept the square, greeted the children on their way to school and "
    "watered the flowers in the old fountain. One day it found a brush and some paint in a box that someone "
    "had left beside the library door. It painted the sunrise over the harbour, with long strokes of orange, "
    "pink and gold, and the whole town came to look."
)
TIPS = (
    "Here are three tips. 1. Go to bed at the same time every night, even on weekends, so your body "
    "knows when to sleep. 2. Keep your bedroom dark, quiet and cool. 3. Avoid coffee, tea and screens "
    "in the evening, because they keep your brain awake long after you stop."
)
RULES = rules_from_settings(Settings())


@pytest.mark.parametrize("token_chars", [None, 4], ids=["a word a token", "4 characters a token"])
@pytest.mark.parametrize("script", [STORY, TIPS], ids=["story", "tips"])
def test_a_slow_model_and_voice_never_leave_a_silence_mid_reply(script: str, token_chars: int | None) -> None:
    """8 tokens a second and a voice at real-time factor 0.3: the issue's slow host, and slower."""
    today = paced_reply(script, 8, 0.3, pacing=False, token_chars=token_chars)
    assert today.gaps, "without pacing this pace runs dry (else the test proves nothing)"
    paced = paced_reply(script, 8, 0.3, token_chars=token_chars)
    assert paced.gaps == []
    assert paced.timeline.audio_seconds == pytest.approx(today.timeline.audio_seconds), "nothing is lost"


def test_chunks_grow_through_a_slow_reply() -> None:
    """The second chunk is short (it must be ready while the first plays); later ones are longer."""
    paced = paced_reply(STORY, 8, 0.3)
    today = paced_reply(STORY, 8, 0.3, pacing=False)
    sizes = [len(chunk) for chunk in paced.chunks]
    assert sizes[0] == len(today.chunks[0]), "the first chunk is the chunker's own"
    assert sizes[1] < len(today.chunks[1])
    assert max(sizes[2:]) > 3 * sizes[1]
    assert " ".join(paced.chunks) == " ".join(today.chunks), "the same text, cut in other places"


@pytest.mark.parametrize("real_time_factor", [0.05, 0.3])
def test_on_a_fast_machine_the_first_sound_is_exactly_as_early_as_without_pacing(real_time_factor: float) -> None:
    paced = paced_reply(STORY, 100, real_time_factor)
    today = paced_reply(STORY, 100, real_time_factor, pacing=False)
    assert paced.first_audio == today.first_audio
    assert paced.cushion == 0
    assert paced.chunks[0] == today.chunks[0]
    assert paced.gaps == []


def test_a_machine_that_speaks_slower_than_the_voice_talks_waits_once_at_the_start() -> None:
    """3 tokens a second: the speech is made slower than it plays, so only a cushion can keep
    it going; it is sized from the pace measured, and there is no silence after it."""
    paced = paced_reply(STORY, 3, 0.3, max_new_tokens=100)
    assert paced.cushion > 1
    assert paced.gaps == []


def test_with_nothing_measured_the_pacer_neither_limits_nor_holds() -> None:
    pacer = Pacer(RULES, max_new_tokens=256)
    assert pacer.chunk_limit(0.0) is None
    assert pacer.hold_seconds(0.0) == 0
    pacer.wrote(5, 0.1)
    pacer.wrote(5, 0.2)
    assert pacer.chunk_limit(0.3) is None, "the voice has not spoken yet"
    assert pacer.hold_seconds(0.3) == 0


def test_the_chunks_already_with_the_voice_are_made_before_their_turn_to_play() -> None:
    """The first chunk's second of audio is ready; two long chunks wait for a slow voice. The start
    is held until the first of them will be ready when that second has played."""
    pacer = Pacer(RULES, max_new_tokens=256)
    pacer.wrote(20, 0.0)
    pacer.wrote(20, 0.5)
    pacer.cut(20)
    pacer.cut(60)
    pacer.cut(60)
    pacer.finished_writing()
    pacer.audio_ready(1.0, chunk_chars=20, synthesis_seconds=0.6)  # 0.03 s of synthesis a character
    needed = 60 * 0.03 * SLACK + HAND_OVER_SECONDS - 1.0
    assert pacer.hold_seconds(1.0) >= needed > 0


def test_a_model_that_writes_on_through_a_long_pause_is_not_taken_for_a_fast_one() -> None:
    """The model waits a while at most when asked to; what it writes meanwhile is left out of its pace."""
    pacer = Pacer(RULES, max_new_tokens=256)
    pacer.wrote(5, 0.0)
    pacer.wrote(5, 0.5)  # 0.1 s a character
    pacer.paused(0.6)
    for at in (1.2, 1.4, 1.6, 1.8):  # a long pause, written through
        pacer.wrote(5, at)
    pacer.resumed(1.9)
    pacer.wrote(5, 2.4)
    assert pacer.pace(2.4).write_seconds_per_char == pytest.approx(0.1)


def test_a_limit_shortens_later_chunks_but_never_the_first_nor_below_the_minimum() -> None:
    text = "Hello there, my friend. This sentence is rather long and has no phrase break at all in it. End."
    unlimited = TextChunker(RULES)
    limited = TextChunker(RULES)
    plain = [*unlimited.feed(text), *unlimited.flush()]
    short = [*limited.feed(text, limit=30), *limited.flush(limit=30)]
    assert short[0] == plain[0]
    assert all(len(chunk) <= 30 for chunk in short[1:])
    assert " ".join(short) == " ".join(plain)
    tiny = TextChunker(RULES)
    assert all(len(chunk) >= RULES.min_chars for chunk in [*tiny.feed(text, limit=1), *tiny.flush(limit=1)][:-1])


class _Holding(Pacer):
    """A pacer that asks to keep the first audio back for as long as the model writes."""

    writing = threading.Event()

    def hold_seconds(self, at: float) -> float:
        return 60.0 if self.writing.is_set() else super().hold_seconds(at)

    def chunk_limit(self, at: float) -> int | None:
        return 12


@dataclass
class HeldReply:
    """A scripted reply whose first audio a :class:`_Holding` pacer keeps back."""

    events: Events
    model: ScriptedModel
    voice: SilentVoice
    pipeline: ReplyPipeline
    last: int  # the index of the model's last token


@pytest.fixture
def held_reply(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldReply]:
    events = Events()
    model = ScriptedModel(STORY, events=events)
    voice = SilentVoice(events)
    monkeypatch.setattr(reply_module, "Pacer", _Holding)
    _Holding.writing.set()
    yield HeldReply(events, model, voice, pipeline_for(model, voice), len(model.pieces) - 1)
    _Holding.writing.clear()


def test_the_pipeline_keeps_the_first_audio_back_while_the_pacer_asks_and_loses_nothing(held_reply: HeldReply) -> None:
    events, model, voice, pipeline, last = (
        held_reply.events,
        held_reply.model,
        held_reply.voice,
        held_reply.pipeline,
        held_reply.last,
    )

    def before_token(index: int) -> None:
        if index == last:  # the voice went on, and the page showed the text, while the first audio was held
            events.wait_for("spoke 2")
            events.wait_for("shown")
            _Holding.writing.clear()

    model.before_token = before_token
    updates = []
    for update in pipeline.reply(ASK, threading.Event(), pipeline.options()):
        updates.append(update)
        if update.text == "".join(model.pieces[:last]) and "shown" not in events.items:
            events.add("shown")
            shown = len(updates) - 1
    audio = [index for index, update in enumerate(updates) if update.audio is not None]
    assert len(audio) == len(voice.spoken) > 3
    assert audio[0] > shown, "no audio went out while the pacer held it"
    assert " ".join(updates[i].spoken for i in audio) == STORY, "every segment, once, in order"
    # (no longer than the pacer's limit, but for a last word that the shortest chunk needs)
    assert all(len(chunk) <= 12 or len(chunk.rsplit(" ", 1)[0]) < RULES.min_chars for chunk in voice.spoken[1:])


def test_a_reply_stopped_while_its_first_audio_is_held_gives_way_at_once_and_says_nothing_more(
    held_reply: HeldReply,
) -> None:
    events, model, pipeline, last = held_reply.events, held_reply.model, held_reply.pipeline, held_reply.last
    model.before_token = lambda index: events.wait_for("stopped") if index == last else None
    stop = threading.Event()
    updates = []
    for update in pipeline.reply(ASK, stop, pipeline.options()):
        updates.append(update)
        if not stop.is_set() and "spoke 2" in events.items:  # (audio is being held)
            stop.set()
            events.add("stopped")
    assert "stopped" in events.items, "the consumer got a turn while the audio was held"
    assert all(update.audio is None for update in updates), "no held audio went out after the stop"


def test_the_voice_asks_for_the_cores_it_gains_from_once_it_is_slow_and_keeps_asking_for_the_reply() -> None:
    pacer = Pacer(RULES, max_new_tokens=256)
    assert pacer.voice_threads(2) == 1, "nothing measured"
    pacer.cut(20)
    pacer.audio_ready(1.0, chunk_chars=20, synthesis_seconds=0.9 * VOICE_BEHIND)
    assert pacer.voice_threads(2) == 1
    pacer.cut(20)
    pacer.audio_ready(1.0, chunk_chars=20, synthesis_seconds=1.2 * VOICE_BEHIND)  # 1.05 x VOICE_BEHIND in all
    assert pacer.voice_threads(2) == 2
    assert pacer.voice_threads(1) == 1, "a voice that gains nothing from more asks for none"
    pacer.cut(20)
    pacer.audio_ready(1.0, chunk_chars=20, synthesis_seconds=0.0)  # faster on two: below the mark again
    assert pacer.voice_threads(2) == 2


class ThreadsNoted(SilentVoice):
    """Notes the threads each chunk was given; gains from two."""

    most_threads = 2

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def _synthesize(self, text: str, length_scale: float, lead: object = None, threads: int = 1) -> np.ndarray:
        self.threads.append(threads)
        return super()._synthesize(text, length_scale, None, threads)


class SlowVoice(ThreadsNoted):
    """Takes at least as long to make a chunk as the chunk plays (a loaded machine only makes it
    slower); 1 ms of sound a character."""

    def _synthesize(self, text: str, length_scale: float, lead: object = None, threads: int = 1) -> np.ndarray:
        super()._synthesize(text, length_scale, None, threads)
        sound = np.zeros(int(0.001 * len(text) * self.sample_rate), dtype=np.float32)
        time.sleep(sound.size / self.sample_rate)
        return sound


@pytest.mark.parametrize("voice_class", [SlowVoice, ThreadsNoted], ids=["slow voice", "fast voice"])
def test_a_slow_voice_speaks_on_the_spare_cores_once_measured_slow_and_a_fast_one_on_one(
    voice_class: type[ThreadsNoted],
) -> None:
    voice = voice_class()
    settings = Settings()
    voices = VoiceSet({voice.key: voice}, voice.key)
    pipeline = ReplyPipeline(settings, voices, SpeechCache(0), WordFilter(settings.blocked_word_list), CoreBudget(2))
    list(pipeline.reply(ASK, threading.Event(), pipeline.options(ScriptedModel(STORY))))
    assert len(voice.threads) > 2
    expected = [1] + [2] * (len(voice.threads) - 1) if voice_class is SlowVoice else [1] * len(voice.threads)
    assert voice.threads == expected
