"""One spoken reply, in order: the model writes, the chunker cuts, the voice speaks, Stop stops it all.

Through a scripted model and a silent voice whose pace each test sets, so every assertion is
about order and state, never about how long something took.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np
import pytest

from speakstream.audio.level import SPEECH_LEVEL
from speakstream.audio.segments import FADE_SECONDS
from speakstream.pipeline import reply as reply_module
from speakstream.pipeline.reply import ReplyUpdate
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.speech_text import SpeechCleaner

from fakes import ASK, Events, Scripted, ScriptedModel, SilentVoice, hold_until, pipeline_for
from support import generation_threads, wait_until

STORY = (
    "Once upon a time, a robot lived in a quiet town. Every morning it swept the square. "
    "One day it found a brush and some paint. It painted the sunrise, and the town loved it."
)


def reply(pipeline: Scripted, speak: bool = True, stop: threading.Event | None = None) -> list[ReplyUpdate]:
    return list(pipeline.reply(ASK, stop or threading.Event(), pipeline.options(speak=speak)))


def expected_chunks(text: str, settings: Settings) -> list[str]:
    chunker, cleaner = TextChunker(rules_from_settings(settings)), SpeechCleaner()
    return [cleaner.clean(chunk) for chunk in [*chunker.feed(text), *chunker.flush()]]


def test_text_grows_in_order_and_every_chunk_is_spoken_once_in_order() -> None:
    events = Events()
    model, voice = ScriptedModel(STORY, events=events), SilentVoice(events)
    pipeline = pipeline_for(model, voice)
    updates = reply(pipeline)
    texts = [update.text for update in updates if update.audio is None]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert updates[-1].final and updates[-1].text == STORY
    assert voice.spoken == expected_chunks(STORY, pipeline.settings)
    audio = [update.audio for update in updates if update.audio is not None]
    assert len(audio) == len(voice.spoken) >= 4
    assert updates[-1].timeline.audio_seconds == pytest.approx(sum(a.size for a in audio) / pipeline.sample_rate)


def test_text_written_faster_than_a_screen_shows_it_comes_in_fewer_updates_and_none_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page re-renders the chat for every update; text that comes within a frame of the
    last update waits for the next one (here a frame longer than the whole reply)."""
    monkeypatch.setattr(reply_module, "TEXT_FRAME_SECONDS", 3600.0)
    model = ScriptedModel(STORY)
    updates = reply(pipeline_for(model), speak=False)
    texts = [update.text for update in updates]
    assert texts[0] == model.pieces[0], "the first token is shown at once"
    assert len(texts) < len(model.pieces) / 2
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert updates[-1].final and texts[-1] == STORY


def test_the_first_sound_is_handed_out_while_the_model_is_still_writing() -> None:
    """The model holds its last token until the first audio has reached the consumer: a
    pipeline that spoke only after the text was complete would never get there (and fail
    after the wait)."""
    events = Events()
    model = ScriptedModel(STORY, events=events)
    last = len(model.pieces) - 1
    model.before_token = hold_until(events, last, "heard 0")
    pipeline = pipeline_for(model, SilentVoice(events))
    for update in pipeline.reply(ASK, threading.Event(), pipeline.options()):
        if update.audio is not None and "heard 0" not in events.items:
            assert update.text != STORY
            events.add("heard 0")
    assert events.index("speak 0") < events.index("heard 0") < events.index(f"token {last}")


def test_stop_ends_writing_and_speaking_and_no_later_sound_is_handed_out() -> None:
    events = Events()
    model = ScriptedModel(STORY, events=events)
    model.before_token = hold_until(events, len(model.pieces) - 2, "stop pressed")
    voice = SilentVoice(events, before_chunk=lambda n: n == 1 and events.wait_for("stop pressed"))
    pipeline = pipeline_for(model, voice)
    stop = threading.Event()
    updates = pipeline.reply(ASK, stop, pipeline.options())
    for update in updates:
        if update.audio is not None:
            break
    stop.set()
    events.add("stop pressed")
    rest = list(updates)
    after = events.items[events.index("stop pressed") :]
    assert "stopped" in after and not any(item.startswith("token") for item in after), after
    assert not any(update.audio is not None for update in rest), "audio of a stopped reply is dropped"
    assert not any(item.startswith("speak") for item in after), "no new chunk is spoken after Stop"
    assert rest[-1].final
    assert wait_until(lambda: not generation_threads())


def test_closing_the_reply_stops_the_model_and_frees_every_thread() -> None:
    """What a closed tab does: Gradio closes the generator at its next yield."""
    events = Events()
    model = ScriptedModel(STORY, events=events, before_token=hold_until(events, 3, "closed"))
    pipeline = pipeline_for(model, SilentVoice(events))
    updates = pipeline.reply(ASK, threading.Event(), pipeline.options())
    next(updates)
    updates.close()
    events.add("closed")
    events.wait_for("stopped")
    assert model.written == 3
    assert wait_until(lambda: not generation_threads())


def test_a_model_error_mid_reply_is_raised_after_the_text_so_far_and_the_voice_ends() -> None:
    model = ScriptedModel(STORY, fail_at=8, error=ValueError("out of memory"))
    pipeline = pipeline_for(model, SilentVoice())
    seen: list[str] = []
    with pytest.raises(ValueError, match="out of memory"):
        for update in pipeline.reply(ASK, threading.Event(), pipeline.options()):
            seen.append(update.text)
    assert seen[-1] == "".join(model.pieces[:8])
    assert wait_until(lambda: not generation_threads())


def test_a_voice_that_fails_leaves_the_text_going() -> None:
    updates = reply(pipeline_for(ScriptedModel(STORY), SilentVoice(fail=True)))
    assert updates[-1].final and updates[-1].text == STORY
    assert not any(update.audio is not None for update in updates)


class PausingVoice(SilentVoice):
    """Says every chunk after a tenth of a second of silence, as real voices do."""

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        sound = super()._synthesize(text, length_scale, lead)
        return np.concatenate([np.zeros(self.sample_rate // 10, dtype=np.float32), np.full_like(sound, 0.5)])


def test_a_voice_that_can_hands_out_the_start_of_the_first_chunk_before_the_rest_and_they_join_without_fades() -> None:
    """The listener hears the first chunk's start while its rest is still being made; later
    chunks come whole. The start and the rest are one chunk's speech: no fade where they meet."""
    events = Events()
    voice = SilentVoice(events, lead_seconds=0.2, after_lead=lambda n: events.wait_for(f"heard {n}"))
    pipeline = pipeline_for(ScriptedModel(STORY, events=events), voice)
    heard = []
    for update in pipeline.reply(ASK, threading.Event(), pipeline.options()):
        if update.audio is not None:
            heard.append((update.audio, update.spoken))
            events.add(f"heard {len(heard) - 1}")
    assert events.index("heard 0") < events.index("spoke 0")  # the start reached the consumer first
    assert events.items.count("lead 0") == 1 and not any(
        item.startswith("lead ") for item in events.items[1:] if item != "lead 0"
    )
    (start, first_text), (rest, rest_text), *later = heard
    assert first_text == rest_text == voice.spoken[0] and len(later) == len(voice.spoken) - 1
    assert start.size == int(0.2 * voice.sample_rate)
    chunk = np.concatenate([start, rest])
    fade = int(pipeline.sample_rate * FADE_SECONDS)
    assert chunk[0] == 0 and chunk[-1] < chunk[fade]  # faded in and out at the chunk's ends
    assert (chunk[fade:-fade] == chunk[fade]).all()  # and nowhere in between


class SwellingVoice(SilentVoice):
    """Hands out the start of the first chunk quietly (an even tone) and the rest four times louder."""

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        swelling = None if lead is None else (lambda start: lead(np.full_like(start, 0.05)))
        return np.full_like(super()._synthesize(text, length_scale, swelling), 0.2)


def test_every_chunk_is_spoken_at_one_level_and_the_rest_of_a_chunk_keeps_the_gain_of_its_start() -> None:
    """The level is set where a chunk starts (its start may be out before the rest is made), so
    a chunk's own rise and fall stay; chunk after chunk starts at the same level."""
    pipeline = pipeline_for(ScriptedModel(STORY), SwellingVoice(lead_seconds=0.2))
    start, rest, *later = [update.audio for update in reply(pipeline) if update.audio is not None]
    fade = int(pipeline.sample_rate * FADE_SECONDS)
    level = start[fade]
    assert level == pytest.approx(SPEECH_LEVEL * 32767, rel=0.01)
    assert rest[fade] == pytest.approx(4 * level, rel=0.01)
    assert later and all(chunk[fade] == level for chunk in later)


def test_the_first_sound_of_a_reply_is_not_delayed_by_the_silence_before_it_and_later_pauses_stay() -> None:
    pipeline = pipeline_for(ScriptedModel(STORY), PausingVoice())
    first, *later = [update.audio for update in reply(pipeline) if update.audio is not None]
    assert np.flatnonzero(first)[0] <= pipeline.sample_rate * FADE_SECONDS + 1
    assert later and all(np.flatnonzero(audio)[0] >= pipeline.sample_rate // 10 for audio in later)


def test_a_reader_that_cannot_start_ends_the_reply_with_its_error() -> None:
    pipeline = pipeline_for(ScriptedModel(STORY), SilentVoice(), chunk_min_chars=50, chunk_max_chars=20)
    done = threading.Event()
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            reply(pipeline)
        except ValueError as error:
            failures.append(error)
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert wait_until(done.is_set), "the reply never ended"
    assert failures and "chunk sizes" in str(failures[0])


def test_text_only_never_calls_the_voice() -> None:
    voice = SilentVoice()
    updates = reply(pipeline_for(ScriptedModel(STORY), voice), speak=False)
    assert updates[-1].text == STORY
    assert voice.spoken == [] and not any(update.audio is not None for update in updates)


def emitted_at(pieces: list[str], settings: Settings) -> list[int]:
    """For each chunk, the token after which the chunker hands it to the voice."""
    chunker = TextChunker(rules_from_settings(settings))
    return [index for index, piece in enumerate(pieces) for _ in chunker.feed(piece)]


@pytest.mark.parametrize("pause_for_first_audio", [True, False])
def test_the_model_is_asked_to_pause_until_the_first_sound_is_out_and_never_after(pause_for_first_audio: bool) -> None:
    """In a fixed order: the model writes the token after the first chunk while the voice is
    speaking it (asked to pause then, when the setting is on); the consumer takes the first
    sound and moves on; only then the model writes its last token (never asked to pause),
    and only after that the voice speaks its second chunk (which could clear a pause itself)."""
    events = Events()
    model = ScriptedModel(STORY, events=events)
    voice = SilentVoice(events)
    pipeline = pipeline_for(model, voice, pause_for_first_audio=pause_for_first_audio)
    first, last = emitted_at(model.pieces, pipeline.settings)[0] + 1, len(model.pieces) - 1
    holds = {first: "speak 0", first + 1: "heard 0", last: "moved on"}
    model.before_token = lambda index: index in holds and events.wait_for(holds[index])
    voice.before_chunk = lambda number: number < 2 and events.wait_for(f"token {(first, last)[number]}")
    for update in pipeline.reply(ASK, threading.Event(), pipeline.options()):
        if "heard 0" in events.items and "moved on" not in events.items:
            events.add("moved on")
        if update.audio is not None and "heard 0" not in events.items:
            events.add("heard 0")
    assert (first in model.paused_at) is pause_for_first_audio
    assert last not in model.paused_at


def test_the_model_still_waits_while_the_voice_makes_the_rest_of_a_chunk_whose_start_is_out() -> None:
    """The start of the first chunk has reached the consumer and it has moved on; the model's
    next token comes while the voice still makes the rest, so the rest gets the cores too."""
    events = Events()
    model = ScriptedModel(STORY, events=events)
    voice = SilentVoice(events, lead_seconds=0.2)
    pipeline = pipeline_for(model, voice)
    first = emitted_at(model.pieces, pipeline.settings)[0] + 1
    model.before_token = lambda index: index == first and events.wait_for("moved on")
    voice.after_lead = lambda number: events.wait_for(f"token {first}")
    for update in pipeline.reply(ASK, threading.Event(), pipeline.options()):
        if "heard 0" in events.items and "moved on" not in events.items:
            events.add("moved on")
        if update.audio is not None and "heard 0" not in events.items:
            events.add("heard 0")
    assert events.index("heard 0") < events.index(f"token {first}") < events.index("spoke 0")
    assert first in model.paused_at


def test_listed_words_are_masked_in_the_text_and_never_spoken() -> None:
    voice = SilentVoice()
    updates = reply(pipeline_for(ScriptedModel(STORY), voice, blocked_words="robot,paint"))
    assert "robot" not in updates[-1].text and "*****" in updates[-1].text
    assert voice.spoken and not any("robot" in said or "paint " in said for said in voice.spoken)


def test_a_long_conversation_loses_its_oldest_turns_to_fit_the_context() -> None:
    model = ScriptedModel("Fine.", context_length=200)
    pipeline = pipeline_for(model, max_new_tokens=50)
    turn = "word " * 30
    history = [{"role": "system", "content": "Be kind."}]
    history += [{"role": ("user", "assistant")[i % 2], "content": f"{i} {turn}"} for i in range(10)]
    history.append({"role": "user", "content": "And now?"})
    list(pipeline.reply(history, threading.Event(), pipeline.options(speak=False)))
    prompt = model.prompts[-1]
    assert model.count_tokens(prompt) <= 200 - 50
    assert prompt[0] == history[0] and prompt[-1] == history[-1]
    assert prompt[1]["role"] == "user" and prompt[1] != history[1], "whole exchanges go, oldest first"
    assert [m["content"] for m in prompt[1:-1]] == [m["content"] for m in history[-1 - (len(prompt) - 2) : -1]]


def test_the_timeline_names_the_voice_and_model_and_counts_what_happened() -> None:
    updates = reply(pipeline_for(ScriptedModel(STORY, name="tiny-model"), SilentVoice()))
    timeline = updates[-1].timeline
    assert timeline.tokens == len(STORY.split())
    assert timeline.first_token is not None and timeline.first_audio is not None
    assert timeline.first_token <= timeline.first_audio <= timeline.done
    assert len(timeline.segments) == sum(update.audio is not None for update in updates)
    summary = timeline.summary()
    assert "voice Silent (tests)" in summary and summary.endswith("model tiny-model")
