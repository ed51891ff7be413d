"""Spoken messages through the real models: the bundled Whisper hears the bundled Piper voice, and
``/talk`` answers a WAV file through gradio_client as ``/chat`` answers its text."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile
import soxr

from speakstream.hearing.audio_in import AudioLimits, decode_wav
from speakstream.hearing.transcriber import Transcriber
from speakstream.text.conversation import content_text
from speakstream.voices import PiperVoice

from support import chat_client, player_segments, words

pytestmark = pytest.mark.slow

# Piper speaks with random noise, so each run hears a slightly different recording: the word for
# word check keeps to a question tiny.en hears in every one (bench voice measures the WER).
QUESTIONS = ["What is the capital of France?"]


def spoken_wav(voice: PiperVoice, text: str) -> bytes:
    """``text`` said by ``voice``, as a WAV file with half a second of silence after it."""
    samples = np.concatenate([voice.synthesize(text), np.zeros(voice.sample_rate // 2, np.int16)])
    out = io.BytesIO()
    soundfile.write(out, samples, voice.sample_rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_bundled_whisper_hears_the_bundled_piper_voice(
    transcriber: Transcriber, piper_voice: PiperVoice, question: str
) -> None:
    heard = transcriber.transcribe(decode_wav(spoken_wav(piper_voice, question), AudioLimits()))
    assert words(heard.text) == words(question)


def test_a_message_longer_than_whisper_s_window_is_heard_to_its_end(
    transcriber: Transcriber, piper_voice: PiperVoice
) -> None:
    # Past 30 s, a message is heard window after window (short ones in one short window).
    first, pause = piper_voice.synthesize(QUESTIONS[0]), np.zeros(32 * piper_voice.sample_rate, np.int16)
    samples = soxr.resample(
        np.concatenate([first, pause, first]).astype(np.float32) / 32768, piper_voice.sample_rate, 16_000
    )
    assert len(samples) > 32 * 16_000
    heard = transcriber.transcribe(samples.astype(np.float32))
    assert words(heard.text) == words(QUESTIONS[0]) and heard.text.lower().count("capital of france") == 2


def test_talk_answers_a_wav_with_its_words_as_the_users_turn_and_a_spoken_reply(
    app_url: str, piper_voice: PiperVoice
) -> None:
    audio = base64.b64encode(spoken_wav(piper_voice, QUESTIONS[0])).decode()
    job = chat_client(app_url, "10.7.0.1").submit(audio, [], voice="piper", api_name="/talk")
    outputs = list(job)
    history = job.outputs()[-1][1]
    assert content_text(history[0]["content"]) == QUESTIONS[0]
    assert "Paris" in content_text(history[-1]["content"])
    assert player_segments([out[2] for out in outputs if isinstance(out[2], dict) and "segments" in out[2]])
