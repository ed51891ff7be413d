"""Pocket TTS voices and "Your voice", through a tiny untrained Pocket TTS model (real loader, real
engine): the first chunk streams in pieces that join exactly, a session's own voice speaks only
for that session, is bounded and forgotten, and every bad clip is refused with its reason."""

from __future__ import annotations

import dataclasses
import io
import secrets
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from starlette.datastructures import Headers

from speakstream.bench.untrained_pocket import install_untrained_pocket
from speakstream.llm.model import LanguageModel
from speakstream.server import assemble
from speakstream.settings import Settings
from speakstream.ui.admit import ReplyChoices
from speakstream.ui.handlers import ChatApp, ChatView, respond
from speakstream.ui.own_voice import CLIP_LIMITS, OwnVoicePage
from speakstream.voices import VoiceSet
from speakstream.voices.cache import SpeechCache
from speakstream.voices.own import OWN, OwnVoices, clone_base
from speakstream.voices.pocket import GATED, LEAD_SECONDS, PocketModels, PocketVoice

from fakes import ScriptedModel, SilentVoice
from support import chat, chat_client, free_port, serve
from tiny_pocket import install_tiny_pocket

RATE = 24_000


@pytest.fixture(scope="module")
def tiny() -> str:
    return install_tiny_pocket()


@pytest.fixture(scope="module")
def pocket(tiny: str) -> PocketVoice:
    return PocketVoice(tiny, PocketModels()).load()


def clip_bytes(seconds: float = 6.0, rate: int = RATE, amplitude: float = 0.3) -> bytes:
    """A WAV file of a voice-like sound (a rising tone in noise) of ``seconds``."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    samples = amplitude * (np.sin(2 * np.pi * (120 + 40 * t) * t) + 0.05 * rng.standard_normal(t.size))
    out = io.BytesIO()
    soundfile.write(out, samples.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def clip_file(tmp_path: Path, data: bytes, name: str = "clip.wav") -> str:
    """``data`` written as Gradio writes an upload: in a folder of its own."""
    path = tmp_path / "uploads" / secrets.token_hex(8) / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return str(path)


def visitor(session: str = "session-a", address: str = "10.1.1.1") -> SimpleNamespace:
    """Gradio's request for a page (its session id) at ``address``."""
    return SimpleNamespace(client=SimpleNamespace(host=address), headers=Headers(), session_hash=session)


def chat_app(tiny: str, pocket: PocketVoice, **overrides: object) -> ChatApp:
    """The app around a scripted model, a silent default voice, and the tiny Pocket TTS voice offered."""
    silent = SilentVoice()
    voices = VoiceSet({silent.key: silent}, silent.key, offered=[tiny], load=lambda name: pocket)
    settings = dataclasses.replace(Settings(), **overrides)
    return assemble(ScriptedModel("Hello there, this is your reply."), voices, settings)


def reply_in(app: ChatApp, session: dict) -> ChatView:
    """The last update of a reply in ``session`` with "Your voice" picked."""
    return ChatView.of(list(respond(app, "Hello?", [], ReplyChoices(voice=OWN), session))[-1])


def spoken_by(app: ChatApp, session: dict) -> str:
    """The voice the timing line names after a reply in ``session`` with "Your voice" picked."""
    return reply_in(app, session).stats


def test_a_pocket_voice_hands_out_its_first_chunk_in_growing_pieces_that_join_exactly(pocket: PocketVoice) -> None:
    text = "Sure! Here is the answer, and a little more of it."
    pocket.model.tts.max_decoder_frames_per_call = 1  # one 80 ms frame at a time, as a slow machine decodes
    try:
        torch.manual_seed(7)
        whole = pocket.synthesize(text)
        torch.manual_seed(7)
        pieces: list[np.ndarray] = []
        rest = pocket.synthesize(text, lead=pieces.append)
    finally:
        pocket.model.tts.max_decoder_frames_per_call = 0
    sizes = [piece.size for piece in pieces]
    assert len(sizes) >= 2 and sizes[0] >= LEAD_SECONDS * RATE
    assert all(later >= sum(sizes[:i]) for i, later in enumerate(sizes[1:], 1))  # each covers the next's making
    assert rest.size > 0  # the chunk's end comes back with the call (its fade-out is put there)
    joined = np.concatenate([*pieces, rest])
    assert np.array_equal(joined, whole)  # no gap, no overlap, no click where they meet


def test_a_pocket_voice_is_labelled_untrained_and_says_it_keeps_its_own_pace(pocket: PocketVoice) -> None:
    assert "untrained" in pocket.label and "Pocket TTS" in pocket.label
    assert pocket.speaking_rate_works is False and pocket.language == "en"


def test_your_voice_speaks_only_in_the_session_that_made_it_until_it_is_forgotten(
    tiny: str, pocket: PocketVoice, tmp_path: Path
) -> None:
    app = chat_app(tiny, pocket)
    page = OwnVoicePage(app)
    mine: dict = {}
    lines = [line for line, _, _ in page.make(visitor(), clip_file(tmp_path, clip_bytes()), tiny, mine)]
    assert lines[0].startswith("Preparing your voice") and lines[-1].startswith("Ready")
    reply = reply_in(app, mine)
    assert "voice Your voice" in reply.stats and reply.replay is None  # never kept in a file for replay
    assert "voice Silent (tests)" in spoken_by(app, {})  # another session picking "Your voice" has none
    assert page.forget(visitor(), OWN, mine)[0].startswith("Forgotten") and len(app.own_voices) == 0
    assert "voice Silent (tests)" in spoken_by(app, mine)


def test_forget_clicked_while_the_voice_is_being_made_wins(tiny: str, pocket: PocketVoice, tmp_path: Path) -> None:
    app = chat_app(tiny, pocket)
    page, session = OwnVoicePage(app), {}
    making = page.make(visitor(), clip_file(tmp_path, clip_bytes()), tiny, session)
    for line, _, _ in making:
        if line.startswith("Preparing your voice: listening"):
            page.forget(visitor(), OWN, session)
            break
    assert [line for line, _, _ in making][-1].startswith("Forgotten") and len(app.own_voices) == 0


def test_a_closed_page_takes_its_voice_with_it(tiny: str, pocket: PocketVoice, tmp_path: Path) -> None:
    app = chat_app(tiny, pocket)
    page = OwnVoicePage(app)
    for session in ("closing", "staying"):
        list(page.make(visitor(session), clip_file(tmp_path, clip_bytes(), f"{session}.wav"), tiny, {}))
    assert len(app.own_voices) == 2
    page.closed(visitor("closing"))
    assert app.own_voices.get("closing") is None and app.own_voices.get("staying") is not None


def test_the_server_keeps_so_many_own_voices_and_forgets_the_least_recently_used(pocket: PocketVoice) -> None:
    voices, samples = OwnVoices(most=2), np.full(5 * RATE, 0.1, dtype=np.float32)
    for session in ("first", "second"):
        voices.make(pocket, samples, session)
    voices.get("first")  # used again: the second is now the oldest
    voices.make(pocket, samples, "third")
    assert voices.get("second") is None and voices.get("first") is not None and voices.get("third") is not None
    assert voices.get("first").key != voices.get("third").key


def test_an_own_voices_speech_is_never_kept_for_anyone(pocket: PocketVoice) -> None:
    voices = OwnVoices(most=1)
    voices.make(pocket, np.full(5 * RATE, 0.1, dtype=np.float32), "mine")
    own = voices.get("mine")
    cache = SpeechCache(10_000_000)
    cache.speak(own, "Hello there.")
    cache.speak(pocket, "Hello there.")
    assert len(cache) == 1  # the built-in voice's speech only


def test_the_clip_file_gradio_wrote_is_deleted_once_read(tiny: str, pocket: PocketVoice, tmp_path: Path) -> None:
    path = Path(clip_file(tmp_path, clip_bytes()))
    list(OwnVoicePage(chat_app(tiny, pocket)).make(visitor(), str(path), tiny, {}))
    assert not path.exists() and not path.parent.exists()


def bad_clips() -> dict[str, tuple[bytes, str]]:
    return {
        "silence": (clip_bytes(amplitude=0.0), "silent"),
        "too short": (clip_bytes(seconds=2.0), "at least 5 seconds"),
        "too long": (clip_bytes(seconds=25.0), "longer than 20 seconds"),
        "not audio": (b"this is not a recording at all" * 100, "not audio"),
        "a huge file": (b"\0" * (CLIP_LIMITS.max_bytes + 1), "too large (15 MB)"),
        "a sample rate out of range": (clip_bytes(rate=4_000), "sample rate (4000 Hz) is out of range"),
    }


@pytest.mark.parametrize("case", list(bad_clips()))
def test_each_bad_clip_gets_its_message_and_the_next_good_one_works(
    case: str, tiny: str, pocket: PocketVoice, tmp_path: Path
) -> None:
    data, message = bad_clips()[case]
    app = chat_app(tiny, pocket, rate_limit=0)
    page, session = OwnVoicePage(app), {}
    line, _, clip = list(page.make(visitor(), clip_file(tmp_path, data), tiny, session))[-1]
    assert line.startswith("Not made:") and message in line and clip is None
    assert OWN not in session and len(app.own_voices) == 0
    assert list(page.make(visitor(), clip_file(tmp_path, clip_bytes()), tiny, session))[-1][0].startswith("Ready")


def test_without_the_cloning_weights_the_page_says_why_your_voice_is_off(
    tiny: str, pocket: PocketVoice, tmp_path: Path
) -> None:
    app = chat_app(tiny, pocket)
    pocket.model.cloning = False
    try:
        line = list(OwnVoicePage(app).make(visitor(), clip_file(tmp_path, clip_bytes()), tiny, {}))[-1][0]
    finally:
        pocket.model.cloning = True
    assert line == f"Your voice is off: {GATED}."


@pytest.mark.slow
def test_through_the_api_a_wav_makes_a_voice_and_the_next_chat_speaks_with_it(
    tiny: str, pocket: PocketVoice, tmp_path: Path
) -> None:
    from gradio_client import handle_file

    app = chat_app(tiny, pocket, port=free_port())
    with serve(app) as url:
        client = chat_client(url)
        line, voice, _ = client.predict(handle_file(clip_file(tmp_path, clip_bytes())), tiny, api_name="/make_voice")
        assert line.startswith("Ready") and voice == OWN
        assert "voice Your voice" in chat(client, "Hello?", voice=OWN).result()[4]
        line, voice, _ = client.predict(OWN, api_name="/forget_voice")
        assert line.startswith("Forgotten") and voice == app.voices.default  # the picker leaves "Your voice"
        assert "voice Silent (tests)" in chat(client, "Hello?", voice=OWN).result()[4]


def test_your_voice_is_made_on_the_picked_pocket_voice_else_a_loaded_one_else_the_first() -> None:
    offered = ["en_US-lessac-medium", "pocket/english/alba", "pocket/french/estelle"]
    assert clone_base(offered, "pocket/french/estelle") == "pocket/french/estelle"
    assert clone_base(offered, "piper", lambda name: name == "pocket/french/estelle") == "pocket/french/estelle"
    assert clone_base(offered, "piper") == "pocket/english/alba"
    assert clone_base(["en_US-lessac-medium"], None) is None


@pytest.mark.slow
def test_the_full_size_untrained_model_speaks_a_reply_through_the_real_pipeline(
    model: LanguageModel, settings: Settings
) -> None:
    install_untrained_pocket(["english"], {"english": ["alba"]})
    voice = PocketVoice("pocket/english/alba", PocketModels()).load()
    app = assemble(model, VoiceSet({voice.key: voice}, voice.key), dataclasses.replace(settings, max_new_tokens=24))
    messages = [{"role": "user", "content": "Hello! How are you?"}]
    updates = list(app.pipeline.reply(messages, threading.Event(), app.pipeline.options(model)))
    timeline = updates[-1].timeline
    assert timeline.voice == "Alba (English; Pocket TTS) — untrained: noise, for measuring"
    assert timeline.voice_failures == 0 and timeline.audio_seconds > 1.0
    assert sum(update.audio is not None for update in updates) >= 2  # the first chunk's start came early
