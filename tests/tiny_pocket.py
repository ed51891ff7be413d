"""Kyutai's smallest Pocket TTS model (english_2m, 1.9M parameters before its codec), untrained,
written into the test run's Hugging Face cache: it loads by name through the package's own
loader as the released model would, and speaks (noise) in milliseconds."""

from __future__ import annotations

from speakstream.bench.untrained_pocket import install_untrained_pocket

MODEL = "english_2m_2026-10"
TINY = f"pocket/{MODEL}/alba"


def install_tiny_pocket() -> str:
    """Write the model and its built-in voice ``alba``; returns the voice's name."""
    install_untrained_pocket([MODEL], {MODEL: ["alba"]})
    return TINY
