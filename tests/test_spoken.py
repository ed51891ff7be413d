"""Spoken messages, as the page's microphone and API callers send them: heard, recognized, then
answered exactly as typed ones (the same chat, limits and stopping). Through a scripted model, a
silent voice and a recognizer that answers what the test tells it; the voice-activity model is
the real Silero VAD, on real speech from espeak-ng."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from starlette.datastructures import Headers

from speakstream.hearing.audio_in import RATE, AudioLimits, decode_wav
from speakstream.hearing.transcriber import Transcriber, Transcript
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.text.conversation import content_text
from speakstream.ui.handlers import ChatApp, ChatView, respond
from speakstream.ui.spoken import NO_WORDS, VOICE_INPUT_OFF, SpokenMessages, hear
from speakstream.voices import VoiceSet

from fakes import Events, ScriptedModel, SilentVoice, hold_until
from support import WAIT_SECONDS, Driven

ANSWER = "Paris is the capital of France. It is lovely in spring."
QUESTION = "What is the capital of France?"


class ScriptedRecognizer(Transcriber):
    """Hears the words the test sets, and counts what it was asked to recognize."""

    def __init__(self, words: str = QUESTION) -> None:
        super().__init__("scripted")
        self.words = words
        self.heard: list[int] = []
        self.label = "scripted"

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        self.heard.append(len(samples))
        return Transcript(self.words, 0.01)


def app(recognizer: Transcriber | None = None, model: ScriptedModel | None = None, **overrides: object) -> ChatApp:
    voice = SilentVoice()
    settings = dataclasses.replace(Settings(), **overrides)
    return assemble(
        model or ScriptedModel(ANSWER), VoiceSet({voice.key: voice}, voice.key), settings, transcriber=recognizer
    )


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A spoken question as a WAV file (espeak-ng, 22 kHz), 0.5 s of silence after it."""
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(path), QUESTION], check=True)
    return path.read_bytes()


def request(address: str = "10.0.0.1") -> SimpleNamespace:
    return SimpleNamespace(client=SimpleNamespace(host=address), headers=Headers(raw=[]))


def event(listening: str, early: bool = False) -> SimpleNamespace:
    return SimpleNamespace(listening=listening, early=early)


def controls(session: dict) -> list:
    """The page's reply controls left at the server's settings, then the session."""
    return [None, None, False, None, None, None, None, None, None, session]


def pcm_pieces(samples: np.ndarray, size: int = 1600) -> list[str]:
    """``samples`` as the page sends them: 0.1 s pieces of 16-bit PCM in base64."""
    ints = np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2")
    return [base64.b64encode(ints[start : start + size].tobytes()).decode() for start in range(0, len(ints), size)]


def say(handlers: ChatApp, listening: str, samples: np.ndarray, after: float = 1.0, first: bool = True) -> list[str]:
    """Send ``samples`` (16 kHz) then ``after`` s of silence from the page ``listening``; the
    states it was answered (``first``: these begin what the page sends)."""
    padded = np.concatenate([samples, np.zeros(round(after * RATE), np.float32)])
    return [
        hear(handlers, {"id": listening, "pcm": pcm, "first": first and index == 0, "last": False})["state"]
        for index, pcm in enumerate(pcm_pieces(padded))
    ]


def test_an_answer_asked_for_in_a_pause_is_shown_only_once_the_pause_ends_the_turn(speech: bytes) -> None:
    events = Events()
    handlers = app(ScriptedRecognizer(), ScriptedModel(ANSWER, events=events), rate_limit=1)
    question = decode_wav(speech, AudioLimits())
    states = say(handlers, "page-1", question, after=0.0)  # the file ends in 0.5 s of silence
    assert "paused" in states and "ended" not in states  # the page asks for the answer now
    answer = Driven(SpokenMessages(handlers).heard(request(), event("page-1", early=True), [], *controls({})))
    events.wait_for("wrote all")
    assert answer.thread.is_alive() and answer.outputs == []  # written, held back: the pause may not end the turn
    assert "answered" in say(handlers, "page-1", np.zeros(0, np.float32), after=0.5, first=False)
    assert answer.ended() and answer.completed()
    assert [turn["content"] for turn in ChatView.of(answer.outputs[-1]).history] == [QUESTION, ANSWER]
    assert handlers.limits.waiting("10.0.0.1") > 0  # counted as one message once shown
    assert 'speakstream_early_answers_total{outcome="shown"} 1.0' in handlers.metrics.text().decode()


@pytest.mark.parametrize(
    ("words", "refusal"),
    [("", "No words"), ("Tell me everything about the sky, the sea and the stars.", "the limit is 40")],
    ids=["no words", "too long"],
)
def test_an_answer_in_a_pause_that_would_be_refused_says_nothing_when_the_user_speaks_on(
    speech: bytes, words: str, refusal: str
) -> None:
    handlers = app(ScriptedRecognizer(words=words), max_input_chars=40)
    question = decode_wav(speech, AudioLimits())
    say(handlers, "page-1", question, after=0.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        answer = Driven(SpokenMessages(handlers).heard(request(), event("page-1", early=True), [], *controls({})))
        say(handlers, "page-1", question, after=0.0, first=False)  # the user speaks on: it was not a message
        assert answer.ended()
    assert not [warning for warning in seen if refusal in str(warning.message)]
    assert len(answer.outputs) == 1 and all(isinstance(value, dict) for value in answer.outputs[0])  # all gr.skip()
    answer = Driven(SpokenMessages(handlers).heard(request(), event("page-1", early=True), [], *controls({})))
    with pytest.warns(UserWarning, match=refusal):  # this pause ends the turn: now it is said
        say(handlers, "page-1", np.zeros(0, np.float32), after=0.5, first=False)
        assert answer.ended()


def test_an_answer_asked_for_in_a_pause_the_user_spoke_on_after_is_dropped_uncounted(speech: bytes) -> None:
    events, session = Events(), {}

    def pace(token: int) -> None:  # token 2 once the user speaks on; token 4 once the reply is told to stop
        if token == 2:
            events.wait_for("spoke on")
        if token == 4:
            session["running"][0].wait(WAIT_SECONDS)

    handlers = app(ScriptedRecognizer(), ScriptedModel(ANSWER, events=events, before_token=pace), rate_limit=1)
    question = decode_wav(speech, AudioLimits())
    say(handlers, "page-1", question, after=0.0)
    answer = SpokenMessages(handlers).heard(request(), event("page-1", early=True), [], *controls(session))
    said = Driven(itertools.islice(answer, 1))  # pulled once, as Gradio pulls: it may not pull again soon
    events.wait_for("token 1")
    say(handlers, "page-1", question, after=0.0, first=False)  # the user speaks on
    events.add("spoke on")
    assert said.ended() and all(isinstance(value, dict) for value in said.outputs[0])  # all gr.skip()
    # Its reply ended before it said so: the answer to the next pause does not wait for it.
    assert session["running"][1].is_set()
    events.wait_for("stopped")  # the model stopped before writing token 4
    assert handlers.limits.waiting("10.0.0.1") == 0  # not a message: not counted
    assert 'speakstream_early_answers_total{outcome="dropped"} 1.0' in handlers.metrics.text().decode()


def last_text(outputs: tuple) -> str:
    return content_text(ChatView.of(outputs).history[-1]["content"])


def test_a_spoken_question_shows_as_the_users_turn_and_is_answered_like_a_typed_one(speech: bytes) -> None:
    recognizer = ScriptedRecognizer()
    handlers = app(recognizer)
    states = say(handlers, "page-1", decode_wav(speech, AudioLimits()))
    assert "speaking" in states and states.count("ended") == 1
    outputs = list(SpokenMessages(handlers).heard(request(), event("page-1"), [], *controls({})))
    assert isinstance(ChatView.of(outputs[0]).message, dict)  # the box keeps what is typed in it (gr.skip())
    assert [turn["content"] for turn in ChatView.of(outputs[-1]).history] == [QUESTION, ANSWER]
    assert ChatView.of(outputs[-1]).completed
    assert len(recognizer.heard) == 1  # recognized once: early, during the closing silence
    metrics = handlers.metrics.text().decode()
    assert "speakstream_utterances_total 1.0" in metrics
    assert "speakstream_speech_end_to_first_audio_seconds_count 1.0" in metrics


def test_the_answer_takes_only_its_own_pages_utterance_and_only_once(speech: bytes) -> None:
    handlers = app(ScriptedRecognizer())
    say(handlers, "page-1", decode_wav(speech, AudioLimits()))
    spoken = SpokenMessages(handlers)
    with pytest.warns(UserWarning, match="No words"):
        assert ChatView.of(list(spoken.heard(request(), event("page-2"), [], *controls({})))[-1]).history == []
    assert last_text(list(spoken.heard(request(), event("page-1"), [], *controls({})))[-1]) == ANSWER
    with pytest.warns(UserWarning, match="No words"):
        list(spoken.heard(request(), event("page-1"), [], *controls({})))


def test_a_spoken_message_stops_the_reply_running_in_its_session(speech: bytes) -> None:
    events = Events()
    model = ScriptedModel(ANSWER, events=events, before_token=hold_until(events, 3, "interrupted"))
    handlers = app(ScriptedRecognizer(), model)
    session: dict = {}
    running = Driven(respond(handlers, "Tell me a long story.", [], session=session))
    events.wait_for("token 2")
    say(handlers, "page-1", decode_wav(speech, AudioLimits()))
    spoken = Driven(SpokenMessages(handlers).heard(request(), event("page-1"), [], *controls(session)))
    assert running.ended() and not running.completed()  # stopped before the spoken one was answered
    events.add("interrupted")
    assert spoken.ended() and spoken.completed()


def test_spoken_messages_count_against_the_rate_limit_before_anything_is_recognized(speech: bytes) -> None:
    recognizer = ScriptedRecognizer()
    handlers = app(recognizer, rate_limit=1)
    list(respond(handlers, "Hi", [], client="10.0.0.1"))
    with pytest.warns(UserWarning, match="too quickly"):
        talk(handlers, base64.b64encode(speech).decode(), address="10.0.0.1")
    piece = {"id": "page-1", "pcm": pcm_pieces(decode_wav(speech, AudioLimits()))[0], "first": True}
    answer = hear(handlers, piece, client="10.0.0.1")
    assert answer["state"] == "error" and "too quickly" in answer["message"]
    assert recognizer.heard == [] and len(handlers.listeners) == 0
    assert hear(handlers, piece, client="10.0.0.2")["state"] in ("quiet", "speaking")  # another client is heard


def talk(handlers: ChatApp, audio: str, history: list | None = None, address: str = "10.0.0.1") -> list[tuple]:
    return list(SpokenMessages(handlers).talk(request(address), audio, history or [], *controls({})))


def test_the_talk_api_takes_a_wav_and_streams_the_transcript_and_the_reply(speech: bytes) -> None:
    handlers = app(ScriptedRecognizer())
    outputs = talk(handlers, base64.b64encode(speech).decode())
    assert [turn["content"] for turn in ChatView.of(outputs[-1]).history] == [QUESTION, ANSWER]
    segments = [ChatView.of(out).player for out in outputs]
    assert any(isinstance(player, dict) and player.get("segments") for player in segments)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ("", "empty"),
        ("not base64 at all!", "not audio"),
        (base64.b64encode(b"plain text").decode(), "not audio"),
        ("A" * 100_000_000, "longer than"),
    ],
    ids=["empty", "not base64", "not a wav", "huge"],
)
def test_bad_audio_through_the_api_gets_a_message_and_leaves_the_chat_as_it_was(audio: str, message: str) -> None:
    handlers = app(ScriptedRecognizer())
    with pytest.warns(UserWarning, match=message):
        outputs = talk(handlers, audio, [{"role": "user", "content": "Hi"}])
    assert ChatView.of(outputs[-1]).history == [{"role": "user", "content": "Hi"}]
    assert handlers.recognition.transcriber.heard == []


def test_a_recording_without_speech_is_refused_before_it_is_recognized(tmp_path: Path) -> None:
    handlers = app(ScriptedRecognizer())
    noise = np.random.default_rng(1).normal(0, 0.05, 2 * RATE).astype(np.float32)
    import io

    import soundfile

    out = io.BytesIO()
    soundfile.write(out, noise, RATE, format="WAV")
    with pytest.warns(UserWarning, match=NO_WORDS):
        talk(handlers, base64.b64encode(out.getvalue()).decode())
    assert handlers.recognition.transcriber.heard == []


def test_with_voice_input_off_the_page_and_the_api_say_so() -> None:
    handlers = app(None)
    assert hear(handlers, {"id": "page", "pcm": ""}) == {"state": "off", "message": VOICE_INPUT_OFF}
    with pytest.warns(UserWarning, match="Voice input is off"):
        talk(handlers, "UklGRg==")


@pytest.mark.parametrize("piece", [None, "text", {"id": "page"}, {"id": 3, "pcm": ""}, {"id": "page", "pcm": "%%%"}])
def test_a_malformed_piece_gets_an_error_answer_and_breaks_nothing(piece: object) -> None:
    handlers = app(ScriptedRecognizer())
    assert hear(handlers, piece)["state"] == "error"
    assert hear(handlers, {"id": "page", "pcm": pcm_pieces(np.zeros(1600, np.float32))[0]})["state"] == "quiet"


def test_picking_a_voice_in_another_language_says_an_english_only_recognizer_hears_english() -> None:
    from speakstream.ui.loading import load_voice

    english, german = SilentVoice(), SilentVoice(key="german")
    german.language = "de"
    voices = VoiceSet({english.key: english, german.key: german}, english.key)
    handlers = assemble(ScriptedModel(ANSWER), voices, Settings(), transcriber=ScriptedRecognizer())
    assert list(load_voice(handlers, "german")) == ["Spoken messages are heard in English only (scripted)."]
    assert list(load_voice(handlers, english.key)) == [""]
