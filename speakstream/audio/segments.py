"""Audio segments for the player: one sample rate, 16-bit mono WAV, short fades so seams never click."""

from __future__ import annotations

import io

import numpy as np
import soundfile

FADE_SECONDS = 0.005
# Quieter than this (-40 dBFS) counts as silence when looking for a reply's first sound.
SILENCE_LEVEL = 328


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` (int16) at ``target`` Hz: the stream must keep one constant rate across voices."""
    if rate == target or samples.size == 0:
        return samples
    import soxr

    out = soxr.resample(samples.astype(np.float32) / 32768.0, rate, target)
    return (np.clip(out, -1.0, 1.0) * 32767).astype(np.int16)


def with_fades(samples: np.ndarray, rate: int, fade_in: bool = True, fade_out: bool = True) -> np.ndarray:
    """Fade the first and last few milliseconds in and out, so joined segments have no clicks
    (not where two pieces of one chunk's speech meet: they join sample-exactly)."""
    n = min(int(rate * FADE_SECONDS), samples.size // 2)
    if n == 0 or not (fade_in or fade_out):
        return samples
    ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    out = samples.astype(np.float32)
    if fade_in:
        out[:n] *= ramp
    if fade_out:
        out[-n:] *= ramp[::-1]
    return out.astype(np.int16)


def from_first_sound(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` from a fade's length before their first sound: the silence a voice puts before
    a reply's first word is only more waiting for the listener."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_LEVEL)
    if loud.size == 0:
        return samples
    return samples[max(0, int(loud[0]) - int(rate * FADE_SECONDS)) :]


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(max(1, round(seconds * rate)), dtype=np.int16)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A complete 16-bit mono WAV file in memory."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def wav_duration(data: bytes) -> float:
    """Seconds of audio in a WAV file held in memory."""
    info = soundfile.info(io.BytesIO(data))
    return info.frames / info.samplerate
