"""More voices: Piper voices by name, fetched on first pick, shared, bounded; never a silent fallback.

Hub voices cannot be fetched here: the real loading path runs on the bundled voice's files laid
out under other names in the Hugging Face cache, as the hub would leave them; a voice that is
not there takes the offline path, with its message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from speakstream.settings import Settings
from speakstream.text.speech_text import SpeechCleaner
from speakstream.ui.admit import ReplyChoices, voice_notice
from speakstream.ui.browser_storage import SAVED_CONTROLS, restore
from speakstream.voices import VoiceLoadError, VoiceSet, load_voices
from speakstream.voices.piper import HUB_REPO, PiperVoice, bundled_files, describe, hub_path

from fakes import Events, ScriptedModel, SilentVoice
from support import WAIT_SECONDS

CACHED = ("de_DE-thorsten-medium", "fr_FR-siwis-medium")


@pytest.fixture(scope="module")
def hub_cache() -> Iterator[list[str]]:
    """The bundled voice's files in the Hugging Face cache under other voices' names; yields those names."""
    repo = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + HUB_REPO.replace("/", "--"))
    commit = "1" * 40
    model, config = bundled_files()
    for name in CACHED:
        target = repo / "snapshots" / commit / hub_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        for source, suffix in ((model, ""), (config, ".json")):
            link = target.with_name(target.name + suffix)
            if not link.exists():
                link.symlink_to(source)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    yield list(CACHED)


def test_names_read_as_language_speaker_and_quality() -> None:
    assert describe("de_DE-thorsten-medium") == ("Thorsten (German; Piper, medium)", "de")
    assert describe("en_GB-alba-medium")[0] == "Alba (English, UK; Piper, medium)"
    assert hub_path("fr_FR-siwis-medium") == "fr/fr_FR/siwis/medium/fr_FR-siwis-medium.onnx"
    with pytest.raises(VoiceLoadError, match="not a Piper voice name"):
        hub_path("../../etc/passwd")


@pytest.mark.slow
def test_an_offered_voice_loads_from_the_hub_cache_when_picked_and_speaks(hub_cache: list[str]) -> None:
    voices = VoiceSet({}, None, offered=hub_cache)
    assert not voices.loaded("de_DE-thorsten-medium")
    voice = voices.request("de_DE-thorsten-medium").result(timeout=WAIT_SECONDS)
    assert voices.loaded("de_DE-thorsten-medium") and voice.language == "de"
    assert voice.synthesize("Guten Tag, wie geht es Ihnen?").size > voice.sample_rate // 2
    assert voices.request("de_DE-thorsten-medium").result() is voice, "loaded once, shared"


def test_at_most_the_bound_of_picked_voices_stay_and_the_start_up_ones_always() -> None:
    joe = SilentVoice(key="piper")
    voices = VoiceSet({"piper": joe}, "piper", offered=["a_AA-one-low", "b_BB-two-low"], max_loaded=1)
    voices.load = lambda key: SilentVoiceLoader(key)
    voices.request("a_AA-one-low").result(timeout=WAIT_SECONDS)
    voices.request("b_BB-two-low").result(timeout=WAIT_SECONDS)
    assert not voices.loaded("a_AA-one-low") and voices.loaded("b_BB-two-low") and voices.loaded("piper")


class SilentVoiceLoader(SilentVoice):
    """A silent voice made by name, loaded by ``load()`` as a Piper voice is."""

    def __init__(self, key: str, hold: Events | None = None) -> None:
        super().__init__(key=key)
        self.hold = hold

    def load(self) -> SilentVoiceLoader:
        if self.hold is not None:
            self.hold.wait_for("loaded")
        return self


def test_a_voice_this_server_does_not_offer_is_refused_and_never_fetched() -> None:
    fetched: list[str] = []
    voices = VoiceSet({}, None, offered=["de_DE-thorsten-medium"])
    voices.load = lambda key: fetched.append(key) or SilentVoiceLoader(key)
    with pytest.raises(VoiceLoadError, match="does not offer the voice"):
        voices.request("en_US-secret-high").result(timeout=WAIT_SECONDS)
    assert fetched == []


@pytest.mark.slow
def test_a_voice_that_cannot_be_fetched_says_why_and_is_not_tried_again_at_once(hub_cache: list[str]) -> None:
    voices = VoiceSet({}, None, offered=["es_ES-davefx-medium"])
    with pytest.raises(VoiceLoadError, match="could not fetch the Piper voice es_ES-davefx-medium"):
        voices.request("es_ES-davefx-medium").result(timeout=120)
    assert voices.request("es_ES-davefx-medium").done(), "the reason comes back at once for a while"


def test_a_reply_with_a_voice_still_loading_speaks_with_the_default_and_says_so() -> None:
    from speakstream.server import assemble

    hold = Events()
    voices = VoiceSet({"piper": SilentVoice(key="piper")}, "piper", offered=["de_DE-thorsten-medium"])
    voices.load = lambda key: SilentVoiceLoader(key, hold)
    app = assemble(ScriptedModel(), voices, Settings())
    picked = ReplyChoices(voice="de_DE-thorsten-medium")
    notice = voice_notice(app, picked)
    assert notice == "Thorsten (German; Piper, medium) is loading (first use); this reply speaks with Silent (tests)."
    assert app.pipeline.options(app.models.default, picked.voice).voice is voices.voices["piper"]
    hold.add("loaded")
    voices.request("de_DE-thorsten-medium").result(timeout=WAIT_SECONDS)
    assert voice_notice(app, picked) is None
    assert app.pipeline.options(app.models.default, picked.voice).voice.key == "de_DE-thorsten-medium"


def test_a_saved_choice_of_an_offered_voice_comes_back() -> None:
    from speakstream.llm.pool import ModelPool

    voices = VoiceSet({"piper": SilentVoice(key="piper")}, "piper", offered=["de_DE-thorsten-medium"])
    restored = restore(voices, ModelPool(Settings(), ScriptedModel()), [], {"voice": "de_DE-thorsten-medium"})
    assert dict(zip(SAVED_CONTROLS, restored[1:], strict=True))["voice"] == "de_DE-thorsten-medium"


def test_the_spoken_note_for_code_is_in_the_voices_language() -> None:
    assert SpeechCleaner("de").clean("```") == "Im Chat steht ein Codebeispiel."
    assert SpeechCleaner("xx").clean("```") == "There is a code example in the chat."


@pytest.mark.slow
def test_the_offered_voices_are_in_the_picker_with_the_start_up_ones() -> None:
    voices = load_voices(Settings(voices="de_DE-thorsten-medium,fr_FR-siwis-medium", tts_model="/nonexistent"))
    keys = [key for _, key in voices.choices]
    assert keys == ["piper", "de_DE-thorsten-medium", "fr_FR-siwis-medium"]
    assert isinstance(voices.voices["piper"], PiperVoice)
