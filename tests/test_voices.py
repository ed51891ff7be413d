"""The voices: glow-tts through Coqui's own loading code, the offline Piper voice, and the fallback."""

from __future__ import annotations

import os
import statistics
import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from speakstream.audio.level import SPEECH_LEVEL, speech_level
from speakstream.bench.untrained_coqui import install_untrained_glow_tts
from speakstream.settings import DEFAULT_TTS_MODEL, Settings
from speakstream.voices import CoquiVoice, PiperVoice, Voice, load_voices
from speakstream.voices.coqui import LEAD_SECONDS

from fakes import ASK, ScriptedModel, pipeline_for
from support import own_openmp_threads, wait_until
from tiny_coqui import GLOW_TTS_FOLDER, MELGAN_FOLDER, install_tiny_glow_tts

pytestmark = pytest.mark.slow

BAD_TEXTS = [
    "",
    "?!...",
    "🎉🤖✅",
    "Crème brûlée and naïve café, señor.",
    "Привет, как дела? 你好。مرحبا",
    "1 22 333 4444 55555 3.14 $1,000 5:30 2024",
    "The robot painted. " * 105,  # about 2,000 characters
]


@pytest.fixture(scope="session")
def tiny_tts_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("tts_home")
    install_tiny_glow_tts(home)
    return home


@pytest.fixture
def glow_tts(tiny_tts_home: Path, monkeypatch: pytest.MonkeyPatch) -> CoquiVoice:
    monkeypatch.setenv("TTS_HOME", str(tiny_tts_home))
    return CoquiVoice(DEFAULT_TTS_MODEL).load()


@pytest.fixture(scope="session")
def piper() -> PiperVoice:
    return PiperVoice().load()


def seconds(voice: Voice, samples: np.ndarray) -> float:
    return len(samples) / voice.sample_rate


def test_glow_tts_loads_by_name_from_coquis_cache_and_speaks(glow_tts: CoquiVoice) -> None:
    samples = glow_tts.synthesize("Hello there, Dr. Smith paid $1,000 for it.")
    assert glow_tts.key == "glow-tts"
    assert glow_tts.sample_rate == 22050
    assert samples.dtype == np.int16 and samples.ndim == 1
    assert seconds(glow_tts, samples) > 0.1


def test_glow_tts_speaks_on_the_one_core_the_cpu_budget_gives_a_voice(
    glow_tts: CoquiVoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    model = glow_tts._tts.synthesizer.tts_model
    speak = model.synthesize
    monkeypatch.setattr(
        model, "synthesize", lambda *args, **kw: threads.append(own_openmp_threads()) or speak(*args, **kw)
    )
    assert glow_tts.synthesize("Hello there.", 1.0).size > 0
    assert threads == [1]


def test_glow_tts_adds_no_silence_after_a_chunk(glow_tts: CoquiVoice) -> None:
    """Coqui's ``tts()`` ends every call with 0.45 s of silence: between our chunks, a hole mid-sentence."""
    samples = glow_tts.synthesize("Sure, here is a quick one.")
    sound = np.flatnonzero(np.abs(samples) > 0)
    assert samples.size - 1 - sound[-1] < 0.01 * glow_tts.sample_rate


@pytest.fixture(scope="session")
def glow_tts_at_released_shapes(tmp_path_factory: pytest.TempPathFactory) -> CoquiVoice:
    home = tmp_path_factory.mktemp("tts_home_full")
    install_untrained_glow_tts(home)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TTS_HOME", str(home))
        return CoquiVoice(DEFAULT_TTS_MODEL).load()


@pytest.mark.parametrize("size", ["small", "released shapes"])
def test_glow_tts_hands_out_the_start_of_its_speech_early_and_it_joins_the_rest_exactly(
    size: str, request: pytest.FixtureRequest
) -> None:
    """At the released shapes too: the vocoder's context on each side of the cut is enough."""
    glow_tts = request.getfixturevalue("glow_tts" if size == "small" else "glow_tts_at_released_shapes")
    text = "Here is a longer first chunk, so that it has a start to hand out."
    torch.manual_seed(0)  # glow-tts draws its noise: the same seed gives the same speech
    whole = glow_tts.synthesize(text)
    starts: list[np.ndarray] = []
    torch.manual_seed(0)
    rest = glow_tts.synthesize(text, lead=starts.append)
    assert len(starts) == 1 and starts[0].dtype == np.int16
    hop = glow_tts._tts.synthesizer.vocoder_ap.hop_length
    assert starts[0].size == round(LEAD_SECONDS * glow_tts.sample_rate / hop) * hop
    joined = np.concatenate([starts[0], rest])
    assert joined.size == whole.size and np.abs(joined.astype(np.int32) - whole).max() <= 1


def test_glow_tts_loads_from_local_model_and_vocoder_folders(tiny_tts_home: Path) -> None:
    root = tiny_tts_home / "tts"
    voice = CoquiVoice(str(root / GLOW_TTS_FOLDER), str(root / MELGAN_FOLDER)).load()
    assert voice.synthesize("A local model speaks.").dtype == np.int16
    assert voice.sample_rate == 22050


def test_piper_speaks_a_real_sentence(piper: PiperVoice) -> None:
    samples = piper.synthesize("The quick brown fox jumps over the lazy dog.")
    assert piper.sample_rate == 22050
    assert samples.dtype == np.int16
    assert 1.5 < seconds(piper, samples) < 5.0
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    assert rms > 500, "speech, not silence"


def test_a_reply_in_the_piper_voice_is_spoken_at_one_level_from_chunk_to_chunk(piper: PiperVoice) -> None:
    """Piper says a short "Yes, of course." far louder than an even sentence (and draws random
    noise each time): every chunk of a reply comes out at the same speech level."""
    text = "Yes, of course. It was a long and quiet afternoon, and nobody came to the door."
    for _ in range(3):
        pipeline = pipeline_for(ScriptedModel(text), piper)  # type: ignore[arg-type]
        updates = pipeline.reply(ASK, threading.Event(), pipeline.options())
        levels = [speech_level(update.audio, pipeline.sample_rate) for update in updates if update.audio is not None]
        assert len(levels) == 2
        assert max(levels) / min(levels) < 1.05
        assert levels[0] == pytest.approx(SPEECH_LEVEL, rel=0.05)


@pytest.mark.parametrize("rate", [0.75, 1.5])
def test_speaking_rate_changes_duration(piper: PiperVoice, glow_tts: CoquiVoice, rate: float) -> None:
    """Both voices draw their phonemes' lengths with random noise (Piper's 0.75 came out once as
    long as its 1.0, in 30 pairs), so each length is the median of three."""
    text = "The robot learned to paint the sky blue."
    for voice in (piper, glow_tts):
        normal, changed = (
            statistics.median(seconds(voice, voice.synthesize(text, r)) for _ in range(3)) for r in (1, rate)
        )
        assert (changed < normal) == (rate > 1), voice.key


@pytest.mark.parametrize("text", BAD_TEXTS, ids=range(len(BAD_TEXTS)))
def test_bad_text_gives_audio_or_nothing_never_an_exception(piper: PiperVoice, glow_tts: CoquiVoice, text: str) -> None:
    for voice in (piper, glow_tts):
        samples = voice.synthesize(text)
        assert samples.dtype == np.int16 and samples.ndim == 1
        if not any(ch.isalnum() for ch in text):
            assert samples.size == 0


def test_glow_tts_is_the_default_when_it_loads(tiny_tts_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTS_HOME", str(tiny_tts_home))
    voices = load_voices(Settings())
    assert voices.default == "glow-tts"
    assert set(voices.voices) == {"glow-tts", "piper"}
    assert voices.notices == []


def test_without_espeak_glow_tts_falls_back_to_piper_with_a_notice(
    tiny_tts_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TTS_HOME", str(tiny_tts_home))
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on PATH
    voices = load_voices(Settings())
    assert voices.default == "piper"
    assert "glow-tts (Coqui TTS) is unavailable: espeak-ng is not installed" in voices.notices[0]
    assert voices.notices[-1] == "Speaking with Joe (Piper, offline)."


def test_a_broken_download_falls_back_to_piper_with_a_notice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    broken = tmp_path / "tts" / GLOW_TTS_FOLDER
    broken.mkdir(parents=True)
    (broken / "model_file.pth").write_bytes(b"not a checkpoint")
    (broken / "config.json").write_text("{")
    monkeypatch.setenv("TTS_HOME", str(tmp_path))
    voices = load_voices(Settings())
    assert voices.default == "piper"
    assert voices.notices[0].startswith("glow-tts (Coqui TTS) is unavailable: could not load")


def test_text_only_loads_no_voice() -> None:
    voices = load_voices(Settings(text_only=True))
    assert voices.voices == {} and voices.get(None) is None


def test_an_unknown_voice_choice_falls_back_with_a_notice(tiny_tts_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTS_HOME", str(tiny_tts_home))
    voices = load_voices(Settings(voice="klingon"))
    assert voices.default == "glow-tts"
    assert "The voice 'klingon' is not available." in voices.notices


def test_piper_needs_no_system_packages() -> None:
    """The offline voice brings its own espeak data: it works with an empty PATH."""
    path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = ""
        assert PiperVoice().load().synthesize("Still speaking.").size > 0
    finally:
        os.environ["PATH"] = path


def test_piper_given_spare_cores_speaks_on_its_own_count_until_a_session_on_more_is_made_then_on_that() -> None:
    voice = PiperVoice(threads=1, most_threads=2).load()
    own = voice._engine(1)
    assert voice._engine(2) is own, "the first ask speaks on its own count while the other is made"
    assert wait_until(lambda: voice._engine(2) is not own)
    assert voice._engine(2).session.get_session_options().intra_op_num_threads == 2
    assert voice._engine(5) is voice._engine(2), "never more than most_threads"
    assert seconds(voice, voice.synthesize("The same voice, on two threads.", while_speaking=nullcontext(2))) > 1
