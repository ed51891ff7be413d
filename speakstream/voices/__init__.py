"""The voices: load each engine once, fall back to the offline voice, and say why.

A voice that fails to load never stops the app: the others are used and the reason is
kept as a notice that the UI shows to the user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from speakstream.settings import Settings
from speakstream.voices.base import Voice, VoiceLoadError
from speakstream.voices.coqui import CoquiVoice
from speakstream.voices.piper import PiperVoice

log = logging.getLogger(__name__)

__all__ = ["CoquiVoice", "PiperVoice", "Voice", "VoiceLoadError", "VoiceSet", "load_voices"]


@dataclass
class VoiceSet:
    """The voices that loaded, which one is the default, and notices for the user."""

    voices: dict[str, Voice] = field(default_factory=dict)
    default: str | None = None
    notices: list[str] = field(default_factory=list)

    def get(self, key: str | None) -> Voice | None:
        """The voice called ``key``, else the default one, else None (no voice at all)."""
        return self.voices.get(key or "") or self.voices.get(self.default or "")

    @property
    def choices(self) -> list[tuple[str, str]]:
        return [(voice.label, key) for key, voice in self.voices.items()]


def load_voices(settings: Settings) -> VoiceSet:
    """Load the Coqui voice and the offline Piper voice; a failure becomes a notice, never an exception."""
    result = VoiceSet()
    if settings.text_only:
        result.notices.append("Text only: speech is turned off.")
        return result
    candidates: list[Voice] = [CoquiVoice(settings.tts_model, settings.tts_vocoder), PiperVoice(settings.tts_threads)]
    for voice in candidates:
        try:
            voice.load()
        except VoiceLoadError as error:
            log.warning("Voice %s unavailable: %s", voice.label, error)
            result.notices.append(f"{voice.label} is unavailable: {error}.")
            continue
        result.voices[voice.key] = voice
    wanted = settings.voice if settings.voice != "auto" else next(iter(result.voices), None)
    if wanted not in result.voices:
        if settings.voice != "auto":
            result.notices.append(f"The voice {settings.voice!r} is not available.")
        wanted = next(iter(result.voices), None)
    result.default = wanted
    if wanted is None:
        result.notices.append("No voice could be loaded: replies are text only.")
    elif result.notices:
        result.notices.append(f"Speaking with {result.voices[wanted].label}.")
    return result
