"""One speech level for every chunk of a reply, whatever the voice and the phrase.

Voices speak some phrases louder than others (a short "Yes." well above a long, even sentence)
and differ from each other; each chunk is scaled so its speech sits at ``SPEECH_LEVEL``, with
the same gain for all of a chunk's pieces, so nothing jumps where two chunks meet. The few
peaks a gain lifts past ``KNEE`` are rounded off softly rather than clipped or allowed to lower
the whole chunk.
"""

from __future__ import annotations

import numpy as np

from speakstream.audio.segments import SILENCE_LEVEL

# The level speech is brought to: the RMS of its voiced frames, full scale 1 (about -18 dBFS).
SPEECH_LEVEL = 0.12
FRAME_SECONDS = 0.02
# Frames overlap (one every 5 ms), so where a chunk's first sample falls barely moves its level.
HOP_SECONDS = 0.005
# Frames within 20 dB of the chunk's loudest carry its speech; the rest is pauses and breath.
VOICED = 0.1
MOST_GAIN = 4.0
# Above this (full scale 1) a lifted sample bends toward full scale instead of past it.
KNEE = 0.8


def speech_level(samples: np.ndarray, rate: int) -> float:
    """The RMS of the voiced frames of ``samples`` (int16), full scale 1; 0 for silence."""
    sound = samples.astype(np.float64) / 32768.0
    frame, hop = max(1, int(rate * FRAME_SECONDS)), max(1, int(rate * HOP_SECONDS))
    if sound.size == 0:
        return 0.0
    if sound.size < frame:
        return float(np.sqrt(np.mean(sound**2)))
    power = np.lib.stride_tricks.sliding_window_view(sound**2, frame)[::hop].mean(axis=1)
    voiced = power[power >= power.max() * VOICED**2]
    return float(np.sqrt(np.mean(voiced)))


def gain_for(samples: np.ndarray, rate: int) -> float:
    """The gain that brings the speech in ``samples`` (a chunk's first piece) to ``SPEECH_LEVEL``;
    1 for silence, which stays silent."""
    if np.max(np.abs(samples.astype(np.int32)), initial=0) <= SILENCE_LEVEL:
        return 1.0
    return min(SPEECH_LEVEL / speech_level(samples, rate), MOST_GAIN)


def with_gain(samples: np.ndarray, gain: float) -> np.ndarray:
    """``samples`` (int16) scaled by ``gain``; what would pass ``KNEE`` is bent below full scale."""
    if gain == 1.0:
        return samples
    sound = samples.astype(np.float32) * (gain / 32768.0)
    size = np.abs(sound)
    over = size > KNEE
    sound[over] = np.sign(sound[over]) * (KNEE + (1 - KNEE) * np.tanh((size[over] - KNEE) / (1 - KNEE)))
    return np.clip(sound * 32768.0, -32768, 32767).astype(np.int16)
