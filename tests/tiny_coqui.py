"""Small untrained Coqui voices for the tests, written where Coqui keeps its downloads.

They load by name through the same code path as the released glow-tts and multiband-MelGAN
(see :mod:`speakstream.bench.untrained_coqui`), small enough to speak in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

from speakstream.bench.untrained_coqui import GLOW_TTS_FOLDER, MELGAN_FOLDER, install_untrained_glow_tts

__all__ = ["GLOW_TTS_FOLDER", "MELGAN_FOLDER", "install_tiny_glow_tts"]


def install_tiny_glow_tts(tts_home: Path) -> Path:
    """Both small models under ``$TTS_HOME/tts``; returns that folder."""
    return install_untrained_glow_tts(tts_home, small=True)
