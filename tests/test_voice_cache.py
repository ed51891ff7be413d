"""The voice cache: the same words in the same voice are synthesized once, and kept speech sounds
exactly as fresh speech does where it joins its neighbours.

Through a voice that draws random noise each time (as Piper and glow-tts do), so speech made
again would differ from speech kept: equal samples prove the second came from the cache.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from speakstream.metrics import Metrics
from speakstream.pipeline.pacing import Pacer
from speakstream.text.chunker import rules_from_settings
from speakstream.text.openings import common_openings, lines_to_keep
from speakstream.text.speech_text import CODE_PHRASES
from speakstream.voices.cache import SpeechCache

from fakes import ASK, Events, NoisyVoice, ScriptedModel, pipeline_for

STORY = "Sure, here is one. A robot lived in a quiet town, and every morning it swept the square."


def heard(pipeline, speaking_rate: float | None = None) -> list[np.ndarray]:
    options = pipeline.options(speaking_rate=speaking_rate)
    return [update.audio for update in pipeline.reply(ASK, threading.Event(), options) if update.audio is not None]


@pytest.mark.parametrize("lead_seconds", [0.0, 0.2], ids=["whole chunks", "first chunk's start early"])
def test_a_reply_said_again_comes_from_the_cache_sample_for_sample_with_the_same_level_fades_and_rate(
    lead_seconds: float,
) -> None:
    events = Events()
    voice = NoisyVoice(events=events, lead_seconds=lead_seconds)
    pipeline = pipeline_for(ScriptedModel(STORY), voice)
    cold = heard(pipeline)
    asked = len(voice.spoken)
    warm = heard(pipeline)
    assert asked >= 2 and len(voice.spoken) == asked, "the voice was not asked again"
    assert len(warm) == len(cold) == asked + (lead_seconds > 0)
    for fresh, kept in zip(cold, warm, strict=True):
        assert np.array_equal(fresh, kept)


def test_another_rate_or_another_engine_version_is_not_given_kept_speech() -> None:
    voice = NoisyVoice()
    pipeline = pipeline_for(ScriptedModel(STORY), voice)
    heard(pipeline)
    asked = len(voice.spoken)
    heard(pipeline, speaking_rate=1.25)
    assert len(voice.spoken) == 2 * asked
    voice.engine = "noisy 1.1"
    heard(pipeline)
    assert len(voice.spoken) == 3 * asked


def test_the_cache_is_bounded_in_bytes_and_forgets_the_least_recently_used_first() -> None:
    voice = NoisyVoice()
    one = voice.synthesize("One two three.").nbytes + len("One two three.")
    cache = SpeechCache(max_bytes=int(2.5 * one))
    for text in ("One two three.", "Two two three.", "One two three.", "Six two three."):
        cache.speak(voice, text)
    assert len(cache) == 2 and cache.bytes <= cache.max_bytes
    asked = len(voice.spoken)
    assert cache.speak(voice, "One two three.")[1], "used just before: kept"
    assert not cache.speak(voice, "Two two three.")[1], "the least recently used went first"
    assert len(voice.spoken) == asked + 1
    nothing = SpeechCache(max_bytes=0)
    nothing.speak(voice, "One two three.")
    assert len(nothing) == 0 and not nothing.speak(voice, "One two three.")[1]


def test_kept_speech_cannot_be_changed_by_whoever_it_is_handed_to() -> None:
    cache, voice = SpeechCache(max_bytes=10**6), NoisyVoice()
    fresh, _ = cache.speak(voice, "Hello there.")
    fresh[:] = 0  # the caller's own copy
    kept, was_kept = cache.speak(voice, "Hello there.")
    assert was_kept and kept.any()
    with pytest.raises(ValueError):
        kept[0] = 1


def test_hits_misses_and_bytes_are_counted_for_the_operator() -> None:
    metrics = Metrics()
    cache, voice = SpeechCache(10**6, metrics), NoisyVoice()
    metrics.voice_cache_bytes.set_function(lambda: cache.bytes)
    for text in ("Hello there.", "Hello there.", "Goodbye now."):
        cache.speak(voice, text)
    value = metrics.registry.get_sample_value
    assert value("speakstream_voice_cache_hits_total") == 1
    assert value("speakstream_voice_cache_misses_total") == 2
    assert value("speakstream_voice_cache_bytes") == cache.bytes > 0


def test_at_start_the_common_openings_and_the_apps_own_line_are_made_and_a_reply_beginning_so_skips_the_voice() -> None:
    events = Events()
    voice = NoisyVoice(events=events, lead_seconds=0.2)
    opening = common_openings()[0]
    pipeline = pipeline_for(ScriptedModel(f"{opening} the robot swept the square every morning."), voice)
    made = pipeline.keep_common_speech()
    assert made == len(lines_to_keep("en")) == len(voice.spoken)
    assert CODE_PHRASES["en"] in voice.spoken and opening in voice.spoken
    voice.spoken.clear()
    audio = heard(pipeline)
    assert voice.spoken and opening not in voice.spoken, "the first chunk came from the cache"
    assert len(audio) == len(voice.spoken) + 2, "its start and its rest, as fresh speech"
    assert pipeline.keep_common_speech() == 0, "made once"


def test_the_fill_skips_a_line_the_voice_fails_on_and_makes_nothing_a_cache_of_none_could_keep() -> None:
    voice = NoisyVoice(fail=True)
    assert SpeechCache(10**6).fill(voice, ["Hello there.", "Goodbye now."]) == 0
    voice = NoisyVoice()
    assert SpeechCache(0).fill(voice, ["Hello there."]) == 0 and voice.spoken == []


def test_a_kept_chunk_says_nothing_of_the_voices_pace() -> None:
    pacer = Pacer(rules_from_settings(pipeline_for(ScriptedModel("Hi.")).settings), 100)
    pacer.cut(30)
    pacer.audio_ready(2.0, 30, 0.0, kept=True)
    assert pacer.pace(0.0).synthesis_seconds_per_char is None
    pacer.cut(30)
    pacer.audio_ready(2.0, 30, 0.5)
    assert pacer.pace(0.0).synthesis_seconds_per_char == pytest.approx(0.5 / 30)
