"""Coqui TTS voices (default: glow-tts trained on LJSpeech, with its default vocoder)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from speakstream.torch_threads import in_passing_thread
from speakstream.voices.base import Voice, VoiceLoadError

log = logging.getLogger(__name__)


def _checkpoint(folder: Path) -> tuple[str, str]:
    """The model file and config.json inside a local Coqui model folder."""
    config = folder / "config.json"
    models = sorted(p for p in folder.glob("*.pth*") if p.is_file())
    if not config.is_file() or not models:
        raise VoiceLoadError(f"{folder} has no config.json and .pth model file")
    return str(models[0]), str(config)


def _reason(error: Exception) -> str:
    """A short, actionable reason for a failed load (requests' errors run to several lines)."""
    import requests

    if isinstance(error, requests.ConnectionError):
        return "it is not cached and its download host cannot be reached (offline?)"
    if isinstance(error, requests.RequestException):
        return f"its download failed ({error.__class__.__name__})"
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{error.__class__.__name__}: {text}" if text else error.__class__.__name__


class CoquiVoice(Voice):
    """Any Coqui model by name (downloaded and cached by Coqui on first use) or from a local folder."""

    def __init__(self, model: str, vocoder: str = "", device: str = "cpu") -> None:
        super().__init__()
        self.model = model
        self.vocoder = vocoder
        self.device = device
        self.key = "glow-tts" if model.rstrip("/").endswith("glow-tts") else Path(model).name
        self.label = f"{self.key} (Coqui TTS)"
        self.sample_rate = 0
        self._tts = None
        self._base_length_scale = 1.0

    def load(self) -> CoquiVoice:
        """Load (downloading by name when not cached); raises :class:`VoiceLoadError` saying why not.

        The work runs on a thread of its own (see :mod:`speakstream.torch_threads`).
        """
        return in_passing_thread(self._load)

    def _load(self) -> CoquiVoice:
        try:
            from TTS.api import TTS
        except ImportError as error:
            raise VoiceLoadError(f"coqui-tts is not installed or cannot import ({error})") from error
        if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
            raise VoiceLoadError("espeak-ng is not installed (glow-tts reads phonemes): apt-get install espeak-ng")
        try:
            if Path(self.model).is_dir():
                model_path, config_path = _checkpoint(Path(self.model))
                vocoder_path, vocoder_config = _checkpoint(Path(self.vocoder)) if self.vocoder else (None, None)
                tts = TTS(
                    model_path=model_path,
                    config_path=config_path,
                    vocoder_path=vocoder_path,
                    vocoder_config_path=vocoder_config,
                    progress_bar=False,
                )
            else:
                tts = TTS(progress_bar=False)
                tts.load_tts_model_by_name(self.model, self.vocoder or None)
        except VoiceLoadError:
            raise
        except Exception as error:
            raise VoiceLoadError(f"could not load {self.model}: {_reason(error)}") from error
        self._tts = tts.to(self.device) if self.device != "cpu" else tts
        self._base_length_scale = float(getattr(tts.synthesizer.tts_model, "length_scale", 1.0))
        self.sample_rate = int(tts.synthesizer.output_sample_rate)
        log.info("Voice %s loaded (%d Hz)", self.label, self.sample_rate)
        return self

    def _synthesize(self, text: str, length_scale: float) -> np.ndarray:
        """Synthesis runs torch, so on a passing thread, whoever calls (see speakstream.torch_threads),
        and on one torch thread: the one core the CPU budget gives a voice."""
        import torch

        model = self._tts.synthesizer.tts_model
        if hasattr(model, "length_scale"):
            model.length_scale = self._base_length_scale * length_scale

        def speak() -> Any:
            torch.set_num_threads(1)
            return self._tts.tts(text, split_sentences=False)

        speech = in_passing_thread(speak, name="speakstream-speak")
        return np.asarray(speech, dtype=np.float32)
