"""A text spoken whole, for the speech API: cut, cleaned, kept and leveled as a reply's chunks are.

A reply's voice thread speaks chunks as the model writes them; here the text is all there, so
each chunk is spoken in turn and handed on as soon as it is made (the first sound after the
first chunk, not the whole text).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from speakstream.audio.level import gain_for, with_gain
from speakstream.audio.segments import resample, with_fades
from speakstream.settings import Settings
from speakstream.text.chunker import TextChunker, rules_from_settings
from speakstream.text.speech_text import SpeechCleaner
from speakstream.torch_threads import CoreBudget
from speakstream.voices import Voice
from speakstream.voices.cache import SpeechCache


def spoken_text(
    text: str,
    voice: Voice,
    speaking_rate: float,
    rate: int,
    speech: SpeechCache,
    cores: CoreBudget,
    settings: Settings,
) -> Iterator[np.ndarray]:
    """The speech of ``text`` in ``voice``, chunk after chunk as each is made, at ``rate`` Hz (int16)."""
    chunker, cleaner = TextChunker(rules_from_settings(settings)), SpeechCleaner(voice.language)
    for chunk in [*chunker.feed(text), *chunker.flush()]:
        if not (said := cleaner.clean(chunk)):
            continue
        samples, _ = speech.speak(voice, said, speaking_rate, cores.voice_speaking(voice.most_threads))
        samples = resample(samples, voice.sample_rate, rate)
        if samples.size:
            yield with_fades(with_gain(samples, gain_for(samples, rate)), rate)
