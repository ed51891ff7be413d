"""The voices: those loaded at start-up, and Piper and Pocket TTS voices by name, loaded when first picked.

At start-up the Coqui voice and the bundled Piper voice load; one that fails never stops the
app: the others are used and the reason is kept as a notice the page shows. The operator
offers more Piper and Pocket TTS voices by name (``--voices``); each is fetched from the hub and loaded the
first time a user picks it, on a loader thread of its own (never in a reply's place), shared
by everyone after, and at most ``SPEAKSTREAM_MAX_LOADED_VOICES`` of them stay loaded (the least
recently used goes first; the start-up voices always stay). Nothing but the offered voices
is ever fetched. A voice that cannot be fetched says why, and a reply meanwhile speaks with
the default voice (the page says so).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from speakstream.devices import choose_device
from speakstream.load_once import LoadOnce
from speakstream.settings import Settings
from speakstream.voices.base import Voice, VoiceLoadError
from speakstream.voices.coqui import CoquiVoice
from speakstream.voices.endpoint import EndpointVoice, SpeechServer
from speakstream.voices.piper import PiperVoice
from speakstream.voices.piper import describe as describe_piper
from speakstream.voices.pocket import PocketModels, PocketVoice, is_pocket
from speakstream.voices.pocket import describe as describe_pocket

log = logging.getLogger(__name__)

__all__ = [
    "CoquiVoice",
    "PiperVoice",
    "PocketVoice",
    "Voice",
    "VoiceLoadError",
    "VoiceSet",
    "describe",
    "load_voices",
    "server_voices",
]


def describe(name: str) -> tuple[str, str]:
    """The label a picker shows for an offered voice ``name``, and the language it speaks."""
    return describe_pocket(name) if is_pocket(name) else describe_piper(name)


@dataclass
class VoiceSet:
    """The voices of this server: those loaded at start-up, which one is the default, notices for
    the user, and the voices offered by name (``offered``), loaded (by ``load``) when first asked for."""

    voices: dict[str, Voice] = field(default_factory=dict)
    default: str | None = None
    notices: list[str] = field(default_factory=list)
    offered: list[str] = field(default_factory=list)
    max_loaded: int = 3
    load: Callable[[str], Voice] = PiperVoice
    _picked: OrderedDict[str, Voice] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _loads: LoadOnce[Voice] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._loads = LoadOnce(
            "voice",
            self._load,
            self._lock,
            too_many=lambda: VoiceLoadError("other voices are loading right now; try again in a minute"),
        )

    def get(self, key: str | None) -> Voice | None:
        """The voice called ``key`` if it is loaded, else the default one, else None (no voice at all)."""
        with self._lock:
            picked = self._picked.get(key or "")
        return self.voices.get(key or "") or picked or self.voices.get(self.default or "")

    def label(self, key: str) -> str:
        with self._lock:
            voice = self.voices.get(key) or self._picked.get(key)
        return voice.label if voice else describe(key)[0]

    def language(self, key: str) -> str:
        """The language voice ``key`` speaks (two letters)."""
        voice = self.voices.get(key)
        return voice.language if voice else describe(key)[1]

    @property
    def choices(self) -> list[tuple[str, str]]:
        """(label, key) of every voice users may pick: the loaded ones, then the offered ones."""
        keys = [*self.voices, *(name for name in self.offered if name not in self.voices)]
        return [(self.label(key), key) for key in keys]

    def loaded(self, key: str) -> bool:
        with self._lock:
            return key in self.voices or key in self._picked

    def request(self, key: str) -> Future[Voice]:
        """Voice ``key``: a finished future when it is loaded (or failed a moment ago), else its single load."""
        with self._lock:
            voice = self.voices.get(key) or self._picked.get(key)
            if voice is not None:
                if key in self._picked:
                    self._picked.move_to_end(key)
                ready: Future[Voice] = Future()
                ready.set_result(voice)
                return ready
            if key not in self.offered:
                refused: Future[Voice] = Future()
                refused.set_exception(VoiceLoadError(f"this server does not offer the voice {key[:80]!r}"))
                return refused
            if key not in self._loads.loading:
                log.info("Loading voice %s (picked by a user)", key)
            return self._loads.request(key)

    def _load(self, key: str) -> Voice:
        voice = self.load(key).load()
        with self._lock:
            self._picked[key] = voice
            while len(self._picked) > self.max_loaded:
                gone, _ = self._picked.popitem(last=False)
                log.info("Unloaded voice %s to make room", gone)
        return voice


def server_voices(settings: Settings, notices: list[str]) -> list[Voice]:
    """The voices of ``--tts-endpoint`` (none without one), its default first: the one named by
    ``SPEAKSTREAM_TTS_ENDPOINT_VOICE``, else the first it lists. A server that cannot be reached
    adds a notice instead."""
    if not settings.tts_endpoint:
        return []
    server = SpeechServer(settings.tts_endpoint, settings.tts_endpoint_key, settings.tts_endpoint_timeout)
    try:
        names = server.voices()
    except VoiceLoadError as error:
        notices.append(f"The speech server's voices are unavailable: {error}.")
        return []
    wanted = settings.tts_endpoint_voice or (names[0] if names else "")
    if not wanted:
        notices.append("The speech server lists no voices: set SPEAKSTREAM_TTS_ENDPOINT_VOICE to one it has.")
        return []
    log.info("Speech server %s: %d voices listed, speaking with %s", server.url, len(names), wanted)
    return [EndpointVoice(server, name) for name in [wanted, *(name for name in names if name != wanted)]]


def load_voices(settings: Settings, cores: int = 1) -> VoiceSet:
    """Load the speech server's voices (with ``--tts-endpoint``), the Coqui voice and the offline
    Piper voice (and ``--voice`` if it is an offered voice); a failure becomes a notice, never an
    exception. A Piper voice may speak on up to ``cores`` threads where the CPU budget has them
    spare."""
    result = VoiceSet(offered=settings.voice_names, max_loaded=settings.max_loaded_voices)
    piper = functools.partial(PiperVoice, threads=settings.tts_threads, most_threads=cores)
    device = choose_device(settings.device)
    pocket = PocketModels(device, quantize=settings.pocket_int8)

    def by_name(name: str) -> Voice:
        return PocketVoice(name, pocket) if is_pocket(name) else piper(name)

    result.load = by_name
    if settings.text_only:
        result.notices.append("Text only: speech is turned off.")
        return result
    candidates: list[Voice] = [
        *server_voices(settings, result.notices),
        CoquiVoice(settings.tts_model, settings.tts_vocoder, device),
        piper(),
    ]
    if settings.voice in result.offered:
        candidates.append(by_name(settings.voice))
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
