"""Spoken replies through the real SmolLM2 and Piper: what only the real models and server can show.

The order of events (overlap, Stop, errors, pauses) is tested fast in test_pipeline.py.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
import torch

from speakstream.llm.model import LanguageModel
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.speech_text import SpeechCleaner
from speakstream.text.word_filter import WordFilter
from speakstream.torch_threads import CoreBudget
from speakstream.voices import VoiceSet
from speakstream.voices.cache import SpeechCache

from fakes import SilentVoice
from support import chat, chat_client, generation_threads, player_segments, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

SKY = [{"role": "user", "content": "Explain in three sentences why the sky is blue."}]
STORY = [{"role": "user", "content": "Tell me a short story about a robot who learns to paint."}]


def run(pipeline: ReplyPipeline, model: LanguageModel, messages, **options) -> list:
    return list(pipeline.reply(messages, threading.Event(), pipeline.options(model, **options)))


def test_audio_arrives_before_the_text_is_finished(model: LanguageModel, pipeline: ReplyPipeline, piper_voice) -> None:
    updates = run(pipeline, model, SKY)
    final = updates[-1]
    assert final.final and final.timeline.first_audio is not None
    audio_at = [i for i, u in enumerate(updates) if u.audio is not None]
    text_at = [i for i, u in enumerate(updates) if u.audio is None and not u.final]
    assert len(audio_at) >= 2, "a multi-sentence reply is spoken in several segments"
    assert audio_at[0] < text_at[-1], "the first segment must be heard while the text is still being written"
    assert final.text.count(".") >= 2


def test_segments_cover_the_whole_reply_at_one_rate(
    model: LanguageModel, pipeline: ReplyPipeline, piper_voice, settings: Settings
) -> None:
    updates = run(pipeline, model, SKY)
    segments = [u.audio for u in updates if u.audio is not None]
    assert all(s.dtype == np.int16 and s.ndim == 1 for s in segments)
    streamed = sum(s.size for s in segments) / pipeline.sample_rate
    chunker, cleaner = TextChunker(rules_from_settings(settings)), SpeechCleaner()
    chunks = [cleaner.clean(c) for c in chunker.feed(updates[-1].text) + chunker.flush()]
    expected = sum(piper_voice.synthesize(c).size for c in chunks if c) / piper_voice.sample_rate
    assert streamed == pytest.approx(expected, rel=0.15)
    assert updates[-1].timeline.audio_seconds == pytest.approx(streamed)


def test_text_only_yields_no_audio(model: LanguageModel, pipeline: ReplyPipeline) -> None:
    updates = run(pipeline, model, SKY, speak=False)
    assert all(u.audio is None for u in updates)
    assert updates[-1].text


def test_stop_mid_reply_ends_generation_and_synthesis(model: LanguageModel, pipeline: ReplyPipeline) -> None:
    baseline = threading.active_count()
    stop = threading.Event()
    updates = pipeline.reply(STORY, stop, pipeline.options(model))
    for update in updates:
        if update.audio is not None:
            break
    stop.set()
    rest = list(updates)
    assert rest[-1].final
    assert sum(u.audio is not None for u in rest) <= 1, "only a segment already handed on before Stop"
    assert wait_until(lambda: not generation_threads())
    assert wait_until(lambda: threading.active_count() <= baseline)


def test_closing_the_reply_frees_every_thread(model: LanguageModel, pipeline: ReplyPipeline) -> None:
    """What a closed tab does: Gradio closes the generator at its next yield."""
    updates = pipeline.reply(STORY, threading.Event(), pipeline.options(model))
    next(updates)
    updates.close()
    assert wait_until(lambda: not generation_threads())


class WatchedCores(CoreBudget):
    """The core budget, noting on each token the generating thread's own torch thread count,
    and whether a voice was speaking (or waiting to) then."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads)
        self.seen: list[tuple[bool, int]] = []
        self._voice_then = False

    def _room(self, me: int) -> int:
        # Called with the budget's lock held, last of all for the share follow() then applies:
        # whether a voice spoke is read at the moment the share was decided, not a moment later.
        self._voice_then = self._speaking + self._waiting_voices > 0
        return super()._room(me)

    def follow(self) -> None:
        super().follow()
        self.seen.append((self._voice_then, torch.get_num_threads()))


def test_the_model_writes_on_a_thread_fewer_while_the_voice_speaks(model, settings: Settings) -> None:
    """The voice holds its first chunk until the model has written a token meanwhile."""
    cores = WatchedCores(2)

    class PatientVoice(SilentVoice):
        def _synthesize(
            self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
        ) -> np.ndarray:
            assert wait_until(lambda: any(speaking for speaking, _ in cores.seen))
            return super()._synthesize(text, length_scale, lead)

    unpaused = dataclasses.replace(settings, pause_for_first_audio=False)
    pipeline = ReplyPipeline(
        unpaused, VoiceSet({"silent": PatientVoice()}, "silent"), SpeechCache(0), WordFilter([]), cores
    )
    run(pipeline, model, SKY)
    assert {count for speaking, count in cores.seen if speaking} == {1}
    assert {count for speaking, count in cores.seen if not speaking} == {2}


def segments_of(outputs: list) -> list[dict]:
    """The Web Audio player's segments, collected from a reply's updates as the page does."""
    return player_segments([out[2] for out in outputs if isinstance(out[2], dict) and "segments" in out[2]])


def test_api_callers_get_each_segment_as_pcm_and_together_they_are_the_replay(app_url: str) -> None:
    job = chat(chat_client(app_url), "Explain in three sentences why the sky is blue.", voice="piper")
    outputs = list(job)
    final = job.outputs()[-1]
    segments = segments_of([*outputs, final])
    assert len(segments) >= 2 and all(segment["text"] for segment in segments)
    pcm = np.concatenate([np.frombuffer(base64.b64decode(segment["pcm"]), dtype="<i2") for segment in segments])
    replay, rate = soundfile.read(io.BytesIO(httpx.get(final[3]["url"], timeout=30).content), dtype="int16")
    assert rate == 22050 and np.array_equal(replay, pcm)
    assert "first audio" in final[4]


def test_the_readme_client_saves_each_spoken_segment(app_url: str, tmp_path: Path, monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("**From a program.**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(snippet.replace("http://127.0.0.1:7860/", app_url), {})
    saved = sorted(tmp_path.glob("segment-*.wav"), key=lambda path: int(path.stem.split("-")[1]))
    assert len(saved) >= 2
    assert [path.name for path in saved] == [f"segment-{index}.wav" for index in range(len(saved))], "none skipped"
    assert all(soundfile.info(str(path)).samplerate == 22050 and soundfile.info(str(path)).frames for path in saved)
