"""Coqui TTS voices (default: glow-tts trained on LJSpeech, with its default vocoder).

A chunk is spoken through the model's own ``synthesize`` and the vocoder's ``inference``
rather than ``TTS.tts()``, which ends every call with 0.45 s of silence (a pause between
sentences for whole texts, a hole in the middle of a sentence for our chunks), and vocodes
the whole chunk before any of it can be heard. Here the vocoder can run in two parts: the
start of a reply's first chunk is handed out while the rest is still being vocoded.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from speakstream.torch_threads import in_passing_thread
from speakstream.voices.base import Voice, VoiceLoadError

log = logging.getLogger(__name__)

# The start of a chunk handed out early: long enough to cover vocoding the rest, also while a
# browser on the same cores slows it (bench browser's stall count is the check).
LEAD_SECONDS = 0.4
# Mel frames on each side of a cut: the vocoder's parts then join exactly (multiband-MelGAN
# at its released shapes differs by under 1e-6 from one pass; 8 frames leave 5e-6).
CONTEXT_FRAMES = 16


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
        self.engine = f"coqui-tts {importlib.metadata.version('coqui-tts')} {self.model} {self.vocoder}"
        self._base_length_scale = float(getattr(tts.synthesizer.tts_model, "length_scale", 1.0))
        self.sample_rate = int(tts.synthesizer.output_sample_rate)
        log.info("Voice %s loaded (%d Hz)", self.label, self.sample_rate)
        return self

    def _synthesize(
        self, text: str, length_scale: float, lead: Callable[[np.ndarray], None] | None = None, threads: int = 1
    ) -> np.ndarray:
        """Synthesis runs torch, so on a passing thread, whoever calls (see speakstream.torch_threads),
        on the torch threads the CPU budget gave (one: glow-tts measured no faster on two, so it
        asks for no more)."""
        import torch

        model = self._tts.synthesizer.tts_model
        if hasattr(model, "length_scale"):
            model.length_scale = self._base_length_scale * length_scale

        def speak() -> np.ndarray:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return self._speech(text, lead)

        return in_passing_thread(speak, name="speakstream-speak")

    def _speech(self, text: str, lead: Callable[[np.ndarray], None] | None) -> np.ndarray:
        synthesizer = self._tts.synthesizer
        model, vocoder = synthesizer.tts_model, synthesizer.vocoder_model
        trim = bool(synthesizer.tts_config.audio.get("do_trim_silence"))
        outputs = model.synthesize(text, use_griffin_lim=vocoder is None, do_trim_silence=trim)
        if vocoder is None:  # the model speaks samples itself (or through Griffin-Lim)
            return np.asarray(outputs["wav"], dtype=np.float32).reshape(-1)
        mel = self._vocoder_input(outputs["outputs"]["model_outputs"][0])
        frames = mel.shape[-1]
        cut = round(LEAD_SECONDS * synthesizer.output_sample_rate / synthesizer.vocoder_ap.hop_length)
        if lead is not None and frames > cut + CONTEXT_FRAMES:
            hop = synthesizer.vocoder_ap.hop_length
            lead(self._vocode(mel[..., : cut + CONTEXT_FRAMES])[: cut * hop])
            rest = self._vocode(mel[..., cut - CONTEXT_FRAMES :])[CONTEXT_FRAMES * hop :]
        else:
            rest = self._vocode(mel)
        # Coqui's own trim: the silence after the speech (the start is never cut: it may be out already)
        return rest[: model.ap.find_endpoint(rest)] if trim else rest

    def _vocoder_input(self, spectrogram: Any) -> Any:
        """The model's output spectrogram in the vocoder's own scale and frame rate, as Coqui's Synthesizer does."""
        import torch
        from TTS.vocoder.utils.generic_utils import interpolate_vocoder_input

        synthesizer = self._tts.synthesizer
        mel = synthesizer.tts_model.ap.denormalize(spectrogram.detach().cpu().numpy().T).T
        mel = synthesizer.vocoder_ap.normalize(mel.T)
        scale = synthesizer.vocoder_config["audio"]["sample_rate"] / synthesizer.tts_model.ap.sample_rate
        if scale != 1:
            return interpolate_vocoder_input([1, scale], mel)
        return torch.tensor(mel).unsqueeze(0)

    def _vocode(self, mel: Any) -> np.ndarray:
        vocoder = self._tts.synthesizer.vocoder_model
        return vocoder.inference(mel.to(next(vocoder.parameters()).device)).cpu().numpy().reshape(-1)
